"""torch.distributed's collectives on Tensors (and arrays), over the process group's communicator.

    import distrain.distributed as dist
    dist.init_process_group("gloo")
    dist.all_reduce(loss_sum, op=dist.ReduceOp.SUM)      # in place, on every rank

One mechanism: each call is the communicator's own in-place allreduce, broadcast or
allgather on the tensor's array (distrain/comm), so every backend (mpi, ps, nccl, local)
serves all of them, with its timeouts and its naming of missing ranks. The collectives a
communicator has no primitive for are built from those, exactly (the results are the
same), at the cost of moving more bytes: reduce_scatter and all_to_all allgather every
rank's whole input, scatter broadcasts the whole list.

`group=` (a ProcessGroup from new_group, distrain/distributed/groups.py) runs a collective
on that group's communicator; `src`/`dst` are ranks of the whole job as in torch,
`group_src`/`group_dst` ranks within the group. `async_op=True` returns a Work: all_reduce
(but PRODUCT) is then really in flight until wait() (the tensor is written and its version
bumped on completion); the others have completed already. Point-to-point messages are in
distrain/distributed/p2p.py.

Objects (all_gather_object, broadcast_object_list) travel as msgpack, never pickle: only
plain values (None, bool, int, float, str, bytes, lists, tuples and str-keyed dicts of
them); anything else raises PlainValueError naming its type (comm/plain_values.py).
"""
from __future__ import annotations

import enum

import numpy

from .engine.backend import array_module
from .engine.tensor import Tensor


class ReduceOp(enum.Enum):
    """torch.distributed.ReduceOp's members that distrain reduces with."""

    SUM = "sum"
    AVG = "mean"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


class Work:
    """What `async_op=True`, isend and irecv return: wait() finishes the operation, is_completed() asks.

    Over a communicator's handle it is really in flight: on completion (seen by wait() or
    is_completed()) the results are in the tensors and their version counters are bumped, as
    an in-place op would. Without a handle the operation has completed already.
    `source` (an irecv from any rank) maps the handle's result to the sender's rank in the job.
    """

    def __init__(self, handle=None, tensors=(), source=None):
        self._handle = handle
        self._tensors = tensors
        self._source = source
        self._sender = None
        self._finished = handle is None

    def wait(self, timeout=None):
        if not self._finished:
            self._sender = self._handle.wait()
            self._finish()
        return True

    def is_completed(self):
        if not self._finished and self._handle.is_completed():
            self._sender = self._handle.wait()  # completed: returns at once, raising its error if it failed
            self._finish()
        return self._finished

    def _finish(self):
        self._finished = True
        for tensor in self._tensors:
            _bump(tensor)

    def _source_rank(self):
        """The sender's rank in the job, for an irecv (torch's Work._source_rank)."""
        self.wait()
        return self._source(self._sender) if self._source is not None else self._sender

    def exception(self):
        return None

    def get_future(self):
        """A distrain.futures.Future completing with the tensors (torch's Work.get_future)."""
        from .futures import completed_when

        return completed_when(self, lambda: list(self._tensors))


_DONE = Work()


def _communicator(group=None, what="collective"):
    from .distributed.groups import resolve

    return resolve(group, what).communicator


def _group_rank(group, rank, group_rank, what, name):
    """The group's number of the rank a collective names: `rank` in the job, or `group_rank` in the group."""
    from .distributed.groups import WORLD, resolve

    process_group = resolve(group, what)
    if (rank is None) == (group_rank is None):
        raise ValueError(f"distrain.distributed.{what}: give exactly one of {name}= (a rank of the job) and "
                         f"group_{name}= (a rank within the group), got {name}={rank!r}, group_{name}={group_rank!r}")
    ranks = process_group.ranks
    if group_rank is not None:
        if isinstance(group_rank, bool) or not isinstance(group_rank, (int, numpy.integer)) or \
                not 0 <= group_rank < len(ranks):
            raise ValueError(f"distrain.distributed.{what}: group_{name}={group_rank!r} is not a rank of this group "
                             f"of {len(ranks)} (group ranks 0..{len(ranks) - 1})")
        return int(group_rank)
    if isinstance(rank, bool) or not isinstance(rank, (int, numpy.integer)) or rank not in ranks:
        where = (f"this world of {len(ranks)} (ranks 0..{len(ranks) - 1})" if process_group is WORLD else
                 f"this group (ranks {list(ranks)})")
        raise ValueError(f"distrain.distributed.{what}: {name}={rank!r} is not a rank of {where}")
    return ranks.index(int(rank))


def _array(value, what):
    """The array a collective works on in place: a Tensor's own storage, or the array itself."""
    if isinstance(value, Tensor):
        return value._data
    if hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__"):
        return value
    raise TypeError(f"distrain.distributed.{what}: expected a Tensor or an array, got {type(value).__name__}")


def _bump(value):
    """A Tensor changed in place: autograd's version counter must say so (as an in-place op would)."""
    if isinstance(value, Tensor):
        value._version_counter[0] += 1


def _fill(outputs, values, what):
    """outputs[r] = values[r], in place (each a Tensor or an array)."""
    for out, value in zip(outputs, values):
        _array(out, what)[...] = value
        _bump(out)


def _finish(async_op):
    return _DONE if async_op else None


def _op(op):
    if isinstance(op, str):
        op = {"sum": ReduceOp.SUM, "avg": ReduceOp.AVG, "mean": ReduceOp.AVG, "max": ReduceOp.MAX,
              "min": ReduceOp.MIN, "product": ReduceOp.PRODUCT}.get(op.lower(), op)
    if not isinstance(op, ReduceOp):
        raise ValueError(f"distrain.distributed: op must be a ReduceOp (SUM, AVG, MAX, MIN, PRODUCT), got {op!r}")
    return op


def _reduce_in_place(comm, array, op):
    op = _op(op)
    if op is ReduceOp.PRODUCT:  # no communicator primitive: the product of every rank's array, gathered
        array[...] = array_module(array).prod(comm.allgather(array), axis=0).astype(array.dtype, copy=False)
    else:
        comm.allreduce(array, op.value)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Combine `tensor` over every rank (of `group`), in place; async_op: a Work in flight until wait()."""
    comm = _communicator(group, "all_reduce")
    array = _array(tensor, "all_reduce")
    if async_op and _op(op) is not ReduceOp.PRODUCT:
        return Work(comm.allreduce_async(array, _op(op).value), (tensor,))
    _reduce_in_place(comm, array, op)
    _bump(tensor)
    return _finish(async_op)


def reduce(tensor, dst=None, op=ReduceOp.SUM, group=None, async_op=False, group_dst=None):
    """Combine `tensor` over every rank into rank `dst`'s (the others' hold the same result too)."""
    _group_rank(group, dst, group_dst, "reduce", "dst")
    return all_reduce(tensor, op, group, async_op)


def broadcast(tensor, src=None, group=None, async_op=False, group_src=None):
    """Overwrite `tensor` on every rank with rank `src`'s."""
    comm = _communicator(group, "broadcast")
    comm.broadcast(_array(tensor, "broadcast"), root=_group_rank(group, src, group_src, "broadcast", "src"))
    _bump(tensor)
    return _finish(async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """tensor_list[r] = rank r's `tensor`, on every rank."""
    comm = _communicator(group, "all_gather")
    _check_list(comm, tensor_list, "all_gather", "tensor_list")
    _fill(tensor_list, comm.allgather(_array(tensor, "all_gather")), "all_gather")
    return _finish(async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Every rank's `input_tensor`, concatenated along the first dimension into `output_tensor`."""
    comm = _communicator(group, "all_gather_into_tensor")
    source = _array(input_tensor, "all_gather_into_tensor")
    out = _array(output_tensor, "all_gather_into_tensor")
    gathered = comm.allgather(source)
    if out.size != gathered.size:
        raise ValueError(f"distrain.distributed.all_gather_into_tensor: output has {out.size} elements, but "
                         f"{comm.size} ranks' inputs of shape {tuple(source.shape)} have {gathered.size}")
    out[...] = gathered.reshape(out.shape)
    _bump(output_tensor)
    return _finish(async_op)


def gather(tensor, gather_list=None, dst=None, group=None, async_op=False, group_dst=None):
    """Rank `dst` gets every rank's `tensor` in gather_list (the others pass None)."""
    comm = _communicator(group, "gather")
    root = _group_rank(group, 0 if dst is None and group_dst is None else dst, group_dst, "gather", "dst")
    gathered = comm.allgather(_array(tensor, "gather"))
    if comm.rank == root:
        _check_list(comm, gather_list, "gather", "gather_list")
        _fill(gather_list, gathered, "gather")
    return _finish(async_op)


def scatter(tensor, scatter_list=None, src=None, group=None, async_op=False, group_src=None):
    """Rank r's `tensor` gets rank `src`'s scatter_list[r] (only src passes the list)."""
    comm = _communicator(group, "scatter")
    root = _group_rank(group, 0 if src is None and group_src is None else src, group_src, "scatter", "src")
    out = _array(tensor, "scatter")
    whole = array_module(out).empty((comm.size,) + tuple(out.shape), dtype=out.dtype)
    if comm.rank == root:
        _check_list(comm, scatter_list, "scatter", "scatter_list")
        for index, value in enumerate(scatter_list):
            whole[index] = _array(value, "scatter")
    comm.broadcast(whole, root=root)
    out[...] = whole[comm.rank]
    _bump(tensor)
    return _finish(async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """Rank r's `output` = input_list[r] combined over every rank."""
    comm = _communicator(group, "reduce_scatter")
    _check_list(comm, input_list, "reduce_scatter", "input_list")
    out = _array(output, "reduce_scatter")
    stacked = array_module(out).stack([_array(value, "reduce_scatter") for value in input_list])
    _reduce_in_place(comm, stacked, op)
    out[...] = stacked[comm.rank]
    _bump(output)
    return _finish(async_op)


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
    """Rank r's output_tensor_list[s] = rank s's input_tensor_list[r] (inputs of one shape)."""
    comm = _communicator(group, "all_to_all")
    _check_list(comm, input_tensor_list, "all_to_all", "input_tensor_list")
    _check_list(comm, output_tensor_list, "all_to_all", "output_tensor_list")
    inputs = [_array(value, "all_to_all") for value in input_tensor_list]
    stacked = array_module(inputs[0]).stack(inputs)
    gathered = comm.allgather(stacked)  # [sender][receiver]
    _fill(output_tensor_list, gathered[:, comm.rank], "all_to_all")
    return _finish(async_op)


def barrier(group=None, async_op=False, device_ids=None):
    """Return once every rank (of `group`) has called barrier()."""
    _communicator(group, "barrier").barrier()
    return _finish(async_op)


def all_gather_object(object_list, obj, group=None):
    """object_list[r] = rank r's plain value `obj` (msgpack, not pickle: see the module docstring)."""
    comm = _communicator(group, "all_gather_object")
    _check_list(comm, object_list, "all_gather_object", "object_list")
    object_list[:] = comm.allgather_object(obj)


def broadcast_object_list(object_list, src=None, group=None, device=None, group_src=None):
    """Every rank's object_list becomes rank `src`'s (plain values, as all_gather_object)."""
    comm = _communicator(group, "broadcast_object_list")
    root = _group_rank(group, 0 if src is None and group_src is None else src, group_src, "broadcast_object_list",
                       "src")
    mine = list(object_list) if comm.rank == root else None
    object_list[:] = comm.allgather_object(mine)[root]


def _check_list(comm, values, what, name):
    if values is None or len(values) != comm.size:
        count = "None" if values is None else f"{len(values)} entries"
        raise ValueError(f"distrain.distributed.{what}: {name} must have one entry per rank ({comm.size}), got "
                         f"{count}")


__all__ = ["ReduceOp", "Work", "all_gather", "all_gather_into_tensor", "all_gather_object", "all_reduce", "all_to_all",
           "barrier", "broadcast", "broadcast_object_list", "gather", "reduce", "reduce_scatter", "scatter"]
