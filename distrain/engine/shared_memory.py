"""Shared-memory storage for CPU tensors: what `Tensor.share_memory_()` and `Module.share_memory()` do.

Hogwild-style training runs several processes that update ONE model in place; so the
model's arrays must live in memory every process maps, and a tensor sent to another
process must arrive as a handle to that memory, not as a copy of its values.

NOTE [ Shared tensors between processes ]
- Memory: each shared array lives in an anonymous shared-memory file (Linux `memfd_create`;
  an unlinked temporary file elsewhere) mapped MAP_SHARED. It has no name in /dev/shm, so
  nothing can leak there, even when a process is killed, and Python's resource_tracker is
  not involved: the kernel frees the memory when the last mapping and the last descriptor
  of it close, in whichever process that happens. A process keeps its descriptor open for
  as long as its mapping lives (to pass it on), and closes it when the mapping is freed.
- Passing: a forked child inherits the mapping. Anything else (Process arguments under
  "spawn" or "forkserver", Queue, Pipe, Pool) goes through multiprocessing's ForkingPickler,
  for which this module registers reductions: a shared tensor pickles as (descriptor, dtype,
  shape, strides, byte offset), and multiprocessing passes the descriptor itself
  (reduction.DupFd: inherited by a spawned child, sent with SCM_RIGHTS otherwise). Plain
  pickle, `copy.deepcopy` and `distrain.save` still copy values, as in PyTorch.
- The receiver maps the file once per process (a second handle to the same file, found by
  its inode, reuses the mapping).
- Packed parameters (engine/flat.py) travel as their whole FlatParameters: the receiver
  rebuilds one buffer over the same memory, holding every parameter of it, so an optimizer
  created there finds them packed and updates the shared memory in place (repacking would
  copy them out of it). Gradients and optimizer state stay private to each process, as in
  PyTorch.
- Views made before a tensor is shared keep the old memory (NumPy views cannot follow a
  move); take views, and create optimizers, after `share_memory_()`.
"""
from __future__ import annotations

import mmap
import os
import tempfile
import weakref
from multiprocessing import reduction

import numpy

from ..errors import DeviceError
from .flat import FlatParameters, pack_parameters
from .nn.parameter import Parameter
from .tensor import Tensor, _make


class _Segment:
    """One shared-memory file mapped in this process. Pickled by ForkingPickler, it becomes the
    receiver's mapping of the same file (pickle's memo makes that one mapping per message)."""

    __slots__ = ("descriptor", "nbytes", "address", "identity", "mapping", "__weakref__")

    def __init__(self, descriptor, nbytes, mapping):
        self.descriptor = descriptor
        self.nbytes = nbytes
        self.mapping = weakref.ref(mapping)  # the arrays keep the mapping alive, not the registry
        self.address = _address(numpy.frombuffer(mapping, dtype=numpy.uint8))
        stat = os.fstat(descriptor)
        self.identity = (stat.st_dev, stat.st_ino)

    def __reduce__(self):
        return (_attach, (reduction.DupFd(self.descriptor), self.nbytes))


_segments = {}  # address of the mapping -> _Segment, for the mappings alive in this process


def _address(array) -> int:
    return array.__array_interface__["data"][0]


def _map(descriptor, nbytes):
    """Map the shared file `descriptor` and register it; the descriptor closes with the mapping."""
    mapping = mmap.mmap(descriptor, nbytes)
    segment = _Segment(descriptor, nbytes, mapping)
    _segments[segment.address] = segment
    weakref.finalize(mapping, _forget, segment.address, descriptor)
    return mapping


def _forget(address, descriptor):
    _segments.pop(address, None)
    os.close(descriptor)


def _new_descriptor(nbytes):
    """A descriptor of a new anonymous shared-memory file of `nbytes` bytes."""
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("distrain-shared", os.MFD_CLOEXEC)
    else:  # no memfd (macOS): an unlinked file, in RAM where /dev/shm exists
        descriptor = os.dup(tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None).fileno())
    os.ftruncate(descriptor, nbytes)
    return descriptor


def _attach(duplicated, nbytes):
    """The receiving side of a _Segment: this process's mapping of the same file."""
    descriptor = duplicated.detach()
    stat = os.fstat(descriptor)
    for segment in list(_segments.values()):
        mapping = segment.mapping()
        if segment.identity == (stat.st_dev, stat.st_ino) and mapping is not None:
            os.close(descriptor)
            return mapping
    return _map(descriptor, nbytes)


def segment_of(array):
    """(the _Segment holding `array`'s memory, byte offset of the array in it), or (None, 0)."""
    if type(array) is not numpy.ndarray or not _segments:
        return None, 0
    address = _address(array)
    for start, segment in _segments.items():
        if start <= address < start + segment.nbytes:
            return segment, address - start
    return None, 0


def is_shared(array) -> bool:
    return segment_of(array)[0] is not None


def shared_copy(array):
    """A C-contiguous copy of the NumPy `array` in new shared memory."""
    mapping = _map(_new_descriptor(max(array.nbytes, 1)), max(array.nbytes, 1))
    shared = numpy.ndarray(array.shape, dtype=array.dtype, buffer=mapping)
    shared[...] = array
    return shared


def share_tensor(tensor):
    """Move `tensor`'s array into shared memory in place (NOTE [ Shared tensors between processes ]).

    A Parameter moves with its whole flat buffer (packed first if it is not), so that every
    parameter packed beside it is shared too and an optimizer keeps updating the buffer.
    """
    if type(tensor._data) is not numpy.ndarray:
        raise DeviceError(f"share_memory_() works on cpu tensors; this {tuple(tensor.shape)} tensor is on "
                          f"{tensor.device}. Move it with .cpu() first, or train on the GPU with one model per "
                          "process (DistributedDataParallel) instead of a shared one")
    if is_shared(tensor._data):
        return tensor
    if isinstance(tensor, Parameter):
        flat = tensor._flat
        if flat is None:
            (flat,) = pack_parameters([tensor])
        if not is_shared(flat.data):
            flat.move_data(shared_copy(flat.data))
        return tensor
    tensor._data = shared_copy(tensor._data)
    return tensor


# -- ForkingPickler reductions -------------------------------------------------------------------
def _array_handle(array):
    segment, offset = segment_of(array)
    return segment, array.dtype.str, array.shape, array.strides, offset


def _array_from(mapping, dtype, shape, strides, offset):
    return numpy.ndarray(shape, dtype=numpy.dtype(dtype), buffer=mapping, offset=offset, strides=strides)


def _reduce_tensor(tensor):
    if not is_shared(tensor._data):
        return tensor.__reduce__()
    return (_rebuild_tensor, (*_array_handle(tensor._data), tensor._requires_grad))


def _rebuild_tensor(mapping, dtype, shape, strides, offset, requires_grad):
    return _make(_array_from(mapping, dtype, shape, strides, offset), requires_grad)


def _reduce_parameter(parameter):
    flat = parameter._flat
    if flat is not None and is_shared(flat.data):
        index = next(i for i, packed in enumerate(flat.parameters) if packed is parameter)
        return (_packed_parameter, (flat, index))
    if not is_shared(parameter._data):
        return parameter.__reduce__()
    return (_rebuild_parameter, (*_array_handle(parameter._data), parameter._requires_grad))


def _rebuild_parameter(mapping, dtype, shape, strides, offset, requires_grad):
    return Parameter(_make(_array_from(mapping, dtype, shape, strides, offset)), requires_grad)


def _packed_parameter(flat, index):
    return flat.parameters[index]


def _reduce_flat(flat):
    if not is_shared(flat.data):
        return flat.__reduce_ex__(2)
    sizes = [end - start for start, end in zip(flat.offsets, flat.offsets[1:] + [flat.data.size])]
    layout = [(tuple(p.shape) if p in flat else (size,), p._requires_grad, p in flat)
              for p, size in zip(flat.parameters, sizes)]
    return (_rebuild_flat, (*_array_handle(flat.data), layout))


def _rebuild_flat(mapping, dtype, shape, strides, offset, layout):
    """A FlatParameters over the received memory, with a new Parameter for every slot of the
    sender's buffer; slots the sender no longer packs are released again at once."""
    data = _array_from(mapping, dtype, shape, strides, offset)
    parameters, start = [], 0
    for slot_shape, requires_grad, _ in layout:
        size = int(numpy.prod(slot_shape))
        parameters.append(Parameter(_make(data[start:start + size].reshape(slot_shape)), requires_grad))
        start += size
    flat = FlatParameters(parameters, data=data)
    for parameter, (_, _, packed) in zip(parameters, layout):
        if not packed:
            flat.release(parameter)
    return flat


reduction.ForkingPickler.register(Tensor, _reduce_tensor)
reduction.ForkingPickler.register(Parameter, _reduce_parameter)
reduction.ForkingPickler.register(FlatParameters, _reduce_flat)
