"""Horovod's collectives on tensors: allreduce, allgather, broadcast, alltoall (each also `_async`), barrier.

    import distrain.horovod as hvd
    hvd.init()
    average = hvd.allreduce(distrain.tensor(loss), name="avg_loss")      # a new tensor
    hvd.allreduce_(gradient, op=hvd.Sum)                                 # in place
    handle = hvd.allreduce_async(x); ...; total = hvd.synchronize(handle)

One mechanism: each call is the communicator's own allreduce, broadcast or allgather
(distrain/comm) on the tensor's array, so mpi, ps, nccl and local serve them all, with
their timeouts. Average, Sum, Min and Max go through the non-blocking allreduce (the
`_async` forms are in flight until synchronize: handles.py). Product and Adasum have no
communicator primitive: every rank's tensor is allgathered and combined on each rank, in
rank order (adasum.py). allgather takes first dimensions that differ between ranks (the
sizes are exchanged first, the tensors padded to the largest); alltoall is built on
that allgather, so it moves every rank's whole tensor to every rank.

Average divides the sum by the number of ranks (integer tensors: floor division, as
Horovod); prescale_factor multiplies before the sum, postscale_factor after.
`name=` is accepted and not needed: calls are matched by their order, which must be the
same on every rank. Results carry no autograd history.
"""
from __future__ import annotations

import numpy

from ..comm.base import DoneHandle
from ..engine.backend import array_module
from ..engine.tensor import Tensor, _make
from . import handles
from .adasum import adasum
from .basics import communicator
from .compression import Compression
from .ops import Adasum, Average, HorovodError, Max, Min, Product, Sum, resolve_op

_COMMUNICATOR_OPS = {Average: "sum", Sum: "sum", Min: "min", Max: "max"}


def _array(tensor, what):
    if isinstance(tensor, Tensor):
        return tensor._data
    if hasattr(tensor, "__array_interface__") or hasattr(tensor, "__cuda_array_interface__"):
        return tensor
    raise HorovodError(f"hvd.{what}: expected a Tensor, got {type(tensor).__name__}; wrap values in "
                       "distrain.tensor(...)")


def _check_dtype(array, what, allowed="iuf"):
    if array.dtype.kind not in allowed:
        kinds = "integer or floating-point" if "b" not in allowed else "bool, integer or floating-point"
        raise HorovodError(f"hvd.{what}: a tensor of dtype {array.dtype} cannot be combined across ranks; it must be "
                           f"{kinds} (convert it with .float() or .long())")


def _check_no_process_set(process_set, what):
    if process_set is not None:
        raise HorovodError(f"hvd.{what}: process sets are not supported; leave process_set out (the whole world)")


def _check_root(comm, root_rank, what):
    if not isinstance(root_rank, (int, numpy.integer)) or not 0 <= root_rank < comm.size:
        raise HorovodError(f"hvd.{what}: root_rank={root_rank!r} is not a rank of this world of {comm.size} "
                           f"(ranks 0..{comm.size - 1})")


def _bump(tensor):
    if isinstance(tensor, Tensor):
        tensor._version_counter[0] += 1


# -- allreduce ------------------------------------------------------------------------------
def _start_allreduce(comm, work, op, prescale_factor, postscale_factor, what):
    """Start reducing the contiguous array `work` in place; (Handle, function finishing it)."""
    xp = array_module(work)
    _check_dtype(work, what)
    if prescale_factor != 1.0:
        work[...] = work * prescale_factor
    if op in (Product, Adasum):  # through allgather: done now (see the module docstring)
        everyone = comm.allgather(work)
        if op is Product:
            work[...] = xp.prod(everyone, axis=0)
        else:
            if work.dtype.kind != "f":
                raise HorovodError(f"hvd.{what}: op=hvd.Adasum needs a floating-point tensor, got {work.dtype}")
            work[...] = adasum(everyone.reshape(comm.size, -1), [(0, work.size)]).reshape(work.shape)
        handle = DoneHandle()
    else:
        handle = comm.allreduce_async(work, _COMMUNICATOR_OPS[op])

    def finish():
        if op is Average:
            if work.dtype.kind == "f":
                work[...] = work / comm.size
            else:
                xp.floor_divide(work, comm.size, out=work)
        if postscale_factor != 1.0:
            work[...] = work * postscale_factor

    return handle, finish


def _allreduce_into(tensor, output, op, average, prescale_factor, postscale_factor, process_set, what):
    """Reduce tensor's values into `output` (an array, maybe tensor's own); (Handle, finish)."""
    _check_no_process_set(process_set, what)
    comm = communicator(what)
    op = resolve_op(op, average, what)
    source = _array(tensor, what)
    work = output if output.flags.c_contiguous else output.copy()
    if work is not source:
        work[...] = source
    handle, finish = _start_allreduce(comm, work, op, prescale_factor, postscale_factor, what)

    def done():
        finish()
        if work is not output:
            output[...] = work

    return handle, done


def allreduce_async(tensor, average=None, name=None, op=None, prescale_factor=1.0, postscale_factor=1.0,
                    process_set=None) -> int:
    """Start combining `tensor` over every rank (not modified); synchronize(handle) returns a new tensor."""
    output = array_module(_array(tensor, "allreduce_async")).empty_like(_array(tensor, "allreduce_async"),
                                                                        order="C")
    handle, done = _allreduce_into(tensor, output, op, average, prescale_factor, postscale_factor, process_set,
                                   "allreduce_async")

    def result():
        done()
        return _make(output)

    return handles.remember(handle, result)


def allreduce_async_(tensor, average=None, name=None, op=None, prescale_factor=1.0, postscale_factor=1.0,
                     process_set=None) -> int:
    """Start combining `tensor` over every rank in place; synchronize(handle) returns `tensor`."""
    handle, done = _allreduce_into(tensor, _array(tensor, "allreduce_async_"), op, average, prescale_factor,
                                   postscale_factor, process_set, "allreduce_async_")

    def result():
        done()
        _bump(tensor)
        return tensor

    return handles.remember(handle, result)


def allreduce(tensor, average=None, name=None, compression=Compression.none, op=None, prescale_factor=1.0,
              postscale_factor=1.0, process_set=None):
    """`tensor` combined over every rank (Average by default), as a new tensor; `tensor` is not modified.

    compression: Compression.none or .fp16 (or your own Compressor): the tensor travels
    compressed and comes back in its own dtype.
    """
    compressed, context = compression.compress(tensor if isinstance(tensor, Tensor) else _make(_array(tensor,
                                                                                                       "allreduce")))
    reduced = handles.synchronize(allreduce_async(compressed, average, name, op, prescale_factor, postscale_factor,
                                                  process_set))
    return compression.decompress(reduced, context)


def allreduce_(tensor, average=None, name=None, op=None, prescale_factor=1.0, postscale_factor=1.0,
               process_set=None):
    """Combine `tensor` over every rank, in place; returns it."""
    return handles.synchronize(allreduce_async_(tensor, average, name, op, prescale_factor, postscale_factor,
                                                process_set))


# -- allgather ------------------------------------------------------------------------------
def _gather_rows(comm, array, counts, what):
    """Every rank's `array` (first dimensions `counts[r]`, the rest equal), as a list in rank order."""
    xp = array_module(array)
    largest = max(counts)
    if all(count == largest for count in counts):
        return list(comm.allgather(xp.ascontiguousarray(array)))
    padded = xp.zeros((largest,) + tuple(array.shape[1:]), dtype=array.dtype)
    padded[:array.shape[0]] = array
    everyone = comm.allgather(padded)
    return [everyone[r, :counts[r]] for r in range(comm.size)]


def _signatures(comm, array, what, extra=None):
    """Every rank's (first dimension, other dimensions, dtype, extra); an error naming ranks that differ."""
    if array.ndim == 0:
        raise HorovodError(f"hvd.{what}: a 0-d tensor has no first dimension to concatenate along; reshape it to (1,)")
    everyone = comm.allgather_object([int(array.shape[0]), list(array.shape[1:]), array.dtype.str, extra])
    mine = everyone[comm.rank]
    for rank, theirs in enumerate(everyone):
        if theirs[1:3] != mine[1:3]:
            raise HorovodError(f"hvd.{what}: rank {comm.rank} has a tensor of shape {tuple(array.shape)} and dtype "
                               f"{array.dtype}, rank {rank} one of shape ({theirs[0]}, {', '.join(map(str, theirs[1]))})"
                               f" and dtype {numpy.dtype(theirs[2])}: all but the first dimension, and the dtype, "
                               "must agree")
    return everyone


def _allgather(tensor, what):
    comm = communicator(what)
    array = _array(tensor, what)
    _check_dtype(array, what, "biuf")
    counts = [signature[0] for signature in _signatures(comm, array, what)]
    xp = array_module(array)
    return _make(xp.concatenate(_gather_rows(comm, array, counts, what)))


def allgather(tensor, name=None, process_set=None):
    """Every rank's `tensor` concatenated along the first dimension (whose size may differ between ranks)."""
    _check_no_process_set(process_set, "allgather")
    return _allgather(tensor, "allgather")


def allgather_async(tensor, name=None, process_set=None) -> int:
    _check_no_process_set(process_set, "allgather_async")
    output = _allgather(tensor, "allgather_async")
    return handles.remember(DoneHandle(), lambda: output)


def allgather_object(obj, name=None, process_set=None):
    """Every rank's plain value `obj`, as a list in rank order (msgpack, never pickle: plain values only)."""
    _check_no_process_set(process_set, "allgather_object")
    return communicator("allgather_object").allgather_object(obj)


# -- broadcast ------------------------------------------------------------------------------
def _broadcast_into(tensor, output, root_rank, what):
    comm = communicator(what)
    _check_root(comm, root_rank, what)
    source = _array(tensor, what)
    _check_dtype(source, what, "biuf")
    work = output if output.flags.c_contiguous else output.copy()
    if work is not source:
        work[...] = source
    comm.broadcast(work, root=root_rank)
    if work is not output:
        output[...] = work


def broadcast(tensor, root_rank, name=None, process_set=None):
    """root_rank's `tensor`, as a new tensor on every rank; `tensor` is not modified."""
    _check_no_process_set(process_set, "broadcast")
    source = _array(tensor, "broadcast")
    output = array_module(source).empty_like(source, order="C")
    _broadcast_into(tensor, output, root_rank, "broadcast")
    return _make(output)


def broadcast_(tensor, root_rank, name=None, process_set=None):
    """Overwrite `tensor` with root_rank's, in place; returns it."""
    _check_no_process_set(process_set, "broadcast_")
    _broadcast_into(tensor, _array(tensor, "broadcast_"), root_rank, "broadcast_")
    _bump(tensor)
    return tensor


def broadcast_async(tensor, root_rank, name=None, process_set=None) -> int:
    output = broadcast(tensor, root_rank, name, process_set)
    return handles.remember(DoneHandle(), lambda: output)


def broadcast_async_(tensor, root_rank, name=None, process_set=None) -> int:
    broadcast_(tensor, root_rank, name, process_set)
    return handles.remember(DoneHandle(), lambda: tensor)


# -- alltoall -------------------------------------------------------------------------------
def _splits_of(comm, array, splits, what):
    if splits is None:
        if array.ndim == 0 or array.shape[0] % comm.size:
            raise HorovodError(f"hvd.{what}: without splits, the first dimension ({tuple(array.shape)}) must divide "
                               f"evenly by the {comm.size} ranks; pass splits=[rows for rank 0, rank 1, ...]")
        return [array.shape[0] // comm.size] * comm.size
    values = numpy.asarray(splits._data if isinstance(splits, Tensor) else splits).reshape(-1)
    if values.dtype.kind not in "iu" or len(values) != comm.size or (values < 0).any() or \
            (array.ndim and values.sum() != array.shape[0]):
        raise HorovodError(f"hvd.{what}: splits must be {comm.size} non-negative integers (one per rank) adding up to "
                           f"the first dimension of the tensor ({tuple(array.shape)}), got {values.tolist()}")
    return [int(value) for value in values]


def _alltoall(tensor, splits, what):
    comm = communicator(what)
    array = _array(tensor, what)
    _check_dtype(array, what, "biuf")
    mine = _splits_of(comm, array, splits, what)
    everyone = _signatures(comm, array, what, mine)
    matrix = [signature[3] for signature in everyone]  # matrix[sender][receiver]
    rows = _gather_rows(comm, array, [signature[0] for signature in everyone], what)
    pieces = []
    for sender, sent in enumerate(rows):
        offset = sum(matrix[sender][:comm.rank])
        pieces.append(sent[offset:offset + matrix[sender][comm.rank]])
    output = _make(array_module(array).concatenate(pieces))
    received = _make(numpy.array([matrix[sender][comm.rank] for sender in range(comm.size)], dtype=numpy.int32))
    return output if splits is None else (output, received)


def alltoall(tensor, splits=None, name=None, process_set=None):
    """Send rows of `tensor` to each rank (splits[r] rows to rank r; equal parts without splits) and return the rows
    received, in rank order; with splits, also a tensor of how many rows came from each rank."""
    _check_no_process_set(process_set, "alltoall")
    return _alltoall(tensor, splits, "alltoall")


def alltoall_async(tensor, splits=None, name=None, process_set=None) -> int:
    _check_no_process_set(process_set, "alltoall_async")
    output = _alltoall(tensor, splits, "alltoall_async")
    return handles.remember(DoneHandle(), lambda: output)


def barrier(process_set=None):
    """Return once every rank has called barrier()."""
    _check_no_process_set(process_set, "barrier")
    communicator("barrier").barrier()


__all__ = ["allgather", "allgather_async", "allgather_object", "allreduce", "allreduce_", "allreduce_async",
           "allreduce_async_", "alltoall", "alltoall_async", "barrier", "broadcast", "broadcast_", "broadcast_async",
           "broadcast_async_"]
