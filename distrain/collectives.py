"""torch.distributed's collectives on Tensors (and arrays), over the process group's communicator.

    import distrain.distributed as dist
    dist.init_process_group("gloo")
    dist.all_reduce(loss_sum, op=dist.ReduceOp.SUM)      # in place, on every rank

One mechanism: each call is the communicator's own in-place allreduce, broadcast or
allgather on the tensor's array (distrain/comm), so every backend (mpi, ps, nccl, local)
serves all of them, with its timeouts and its naming of missing ranks. The collectives a
communicator has no primitive for are built from those, exactly (the results are the
same), at the cost of moving more bytes: reduce_scatter and all_to_all allgather every
rank's whole input, scatter broadcasts the whole list. Point-to-point (send/recv) and
subgroups (new_group) need primitives the communicators do not have yet.

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
    """What an `async_op=True` collective returns: it has run already (distrain's collectives on tensors
    are synchronous), so wait() returns at once and is_completed() is True."""

    def wait(self, timeout=None):
        return True

    def is_completed(self):
        return True


_DONE = Work()


def _communicator():
    from .distributed import get_communicator

    return get_communicator()


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


def _no_group(group, what):
    if group is not None:
        raise NotImplementedError(f"distrain.distributed.{what}: subgroups (group=) are not supported yet; "
                                  "leave group=None for the whole world")


def _reduce_in_place(comm, array, op):
    op = _op(op)
    if op is ReduceOp.PRODUCT:  # no communicator primitive: the product of every rank's array, gathered
        array[...] = array_module(array).prod(comm.allgather(array), axis=0).astype(array.dtype, copy=False)
    else:
        comm.allreduce(array, op.value)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Combine `tensor` over every rank, in place."""
    _no_group(group, "all_reduce")
    _reduce_in_place(_communicator(), _array(tensor, "all_reduce"), op)
    _bump(tensor)
    return _finish(async_op)


def reduce(tensor, dst, op=ReduceOp.SUM, group=None, async_op=False):
    """Combine `tensor` over every rank into rank `dst`'s (the others' hold the same result too)."""
    _no_group(group, "reduce")
    comm = _communicator()
    _check_rank(comm, dst, "reduce", "dst")
    return all_reduce(tensor, op, None, async_op)


def broadcast(tensor, src, group=None, async_op=False):
    """Overwrite `tensor` on every rank with rank `src`'s."""
    _no_group(group, "broadcast")
    comm = _communicator()
    _check_rank(comm, src, "broadcast", "src")
    comm.broadcast(_array(tensor, "broadcast"), root=src)
    _bump(tensor)
    return _finish(async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """tensor_list[r] = rank r's `tensor`, on every rank."""
    _no_group(group, "all_gather")
    comm = _communicator()
    _check_list(comm, tensor_list, "all_gather", "tensor_list")
    _fill(tensor_list, comm.allgather(_array(tensor, "all_gather")), "all_gather")
    return _finish(async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Every rank's `input_tensor`, concatenated along the first dimension into `output_tensor`."""
    _no_group(group, "all_gather_into_tensor")
    comm = _communicator()
    source = _array(input_tensor, "all_gather_into_tensor")
    out = _array(output_tensor, "all_gather_into_tensor")
    gathered = comm.allgather(source)
    if out.size != gathered.size:
        raise ValueError(f"distrain.distributed.all_gather_into_tensor: output has {out.size} elements, but "
                         f"{comm.size} ranks' inputs of shape {tuple(source.shape)} have {gathered.size}")
    out[...] = gathered.reshape(out.shape)
    _bump(output_tensor)
    return _finish(async_op)


def gather(tensor, gather_list=None, dst=0, group=None, async_op=False):
    """Rank `dst` gets every rank's `tensor` in gather_list (the others pass None)."""
    _no_group(group, "gather")
    comm = _communicator()
    _check_rank(comm, dst, "gather", "dst")
    gathered = comm.allgather(_array(tensor, "gather"))
    if comm.rank == dst:
        _check_list(comm, gather_list, "gather", "gather_list")
        _fill(gather_list, gathered, "gather")
    return _finish(async_op)


def scatter(tensor, scatter_list=None, src=0, group=None, async_op=False):
    """Rank r's `tensor` gets rank `src`'s scatter_list[r] (only src passes the list)."""
    _no_group(group, "scatter")
    comm = _communicator()
    _check_rank(comm, src, "scatter", "src")
    out = _array(tensor, "scatter")
    whole = array_module(out).empty((comm.size,) + tuple(out.shape), dtype=out.dtype)
    if comm.rank == src:
        _check_list(comm, scatter_list, "scatter", "scatter_list")
        for index, value in enumerate(scatter_list):
            whole[index] = _array(value, "scatter")
    comm.broadcast(whole, root=src)
    out[...] = whole[comm.rank]
    _bump(tensor)
    return _finish(async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """Rank r's `output` = input_list[r] combined over every rank."""
    _no_group(group, "reduce_scatter")
    comm = _communicator()
    _check_list(comm, input_list, "reduce_scatter", "input_list")
    out = _array(output, "reduce_scatter")
    stacked = array_module(out).stack([_array(value, "reduce_scatter") for value in input_list])
    _reduce_in_place(comm, stacked, op)
    out[...] = stacked[comm.rank]
    _bump(output)
    return _finish(async_op)


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
    """Rank r's output_tensor_list[s] = rank s's input_tensor_list[r] (inputs of one shape)."""
    _no_group(group, "all_to_all")
    comm = _communicator()
    _check_list(comm, input_tensor_list, "all_to_all", "input_tensor_list")
    _check_list(comm, output_tensor_list, "all_to_all", "output_tensor_list")
    inputs = [_array(value, "all_to_all") for value in input_tensor_list]
    stacked = array_module(inputs[0]).stack(inputs)
    gathered = comm.allgather(stacked)  # [sender][receiver]
    _fill(output_tensor_list, gathered[:, comm.rank], "all_to_all")
    return _finish(async_op)


def barrier(group=None, async_op=False, device_ids=None):
    """Return once every rank has called barrier()."""
    _no_group(group, "barrier")
    _communicator().barrier()
    return _finish(async_op)


def all_gather_object(object_list, obj, group=None):
    """object_list[r] = rank r's plain value `obj` (msgpack, not pickle: see the module docstring)."""
    _no_group(group, "all_gather_object")
    comm = _communicator()
    _check_list(comm, object_list, "all_gather_object", "object_list")
    object_list[:] = comm.allgather_object(obj)


def broadcast_object_list(object_list, src=0, group=None, device=None):
    """Every rank's object_list becomes rank `src`'s (plain values, as all_gather_object)."""
    _no_group(group, "broadcast_object_list")
    comm = _communicator()
    _check_rank(comm, src, "broadcast_object_list", "src")
    mine = list(object_list) if comm.rank == src else None
    object_list[:] = comm.allgather_object(mine)[src]


def _check_rank(comm, rank, what, name):
    if not isinstance(rank, (int, numpy.integer)) or not 0 <= rank < comm.size:
        raise ValueError(f"distrain.distributed.{what}: {name}={rank!r} is not a rank of this world of {comm.size} "
                         f"(ranks 0..{comm.size - 1})")


def _check_list(comm, values, what, name):
    if values is None or len(values) != comm.size:
        count = "None" if values is None else f"{len(values)} entries"
        raise ValueError(f"distrain.distributed.{what}: {name} must have one entry per rank ({comm.size}), got "
                         f"{count}")


__all__ = ["ReduceOp", "Work", "all_gather", "all_gather_into_tensor", "all_gather_object", "all_reduce", "all_to_all",
           "barrier", "broadcast", "broadcast_object_list", "gather", "reduce", "reduce_scatter", "scatter"]
