"""Batches to a GPU through pinned host memory, on a side stream.

A pageable NumPy array cannot be copied to the GPU asynchronously: CUDA first stages it
through a pinned buffer of its own, synchronously. So each array is copied (by the CPU)
into a pinned buffer of ours and from there to the device on a dedicated stream; the
compute stream waits on an event recorded after the copies, so kernels on the batch
start only when it has arrived while the Python loop already moves on. Pinned buffers are
double-buffered per size: a buffer is refilled only after the copy that last read it has
finished (its event), so batch i+1 can be in flight while batch i is computed on.
"""
from __future__ import annotations

import numpy

from ..engine import backend
from .collate import join_arrays, split_arrays

_stagers = {}


def to_device(batch, device):
    """`batch` with every array/tensor on `device` (a cuda Device), copied asynchronously."""
    stager = _stagers.get(device)
    if stager is None:
        stager = _stagers[device] = _PinnedStager(device)
    return stager.copy(batch)


class _PinnedStager:
    def __init__(self, device):
        self.cupy = backend.cupy_module()
        self.device = device
        with self.cupy.cuda.Device(device.index or 0):
            self.stream = self.cupy.cuda.Stream(non_blocking=True)
        self.buffers = {}  # nbytes -> [[pinned memory, event or None], [..]]
        self.turn = {}

    def _pinned(self, nbytes):
        pair = self.buffers.get(nbytes)
        if pair is None:
            pair = self.buffers[nbytes] = [[self.cupy.cuda.alloc_pinned_memory(nbytes), None] for _ in range(2)]
            self.turn[nbytes] = 0
        index = self.turn[nbytes]
        self.turn[nbytes] = 1 - index
        entry = pair[index]
        if entry[1] is not None:
            entry[1].synchronize()  # the copy that last read this buffer is done
        return entry

    def copy(self, batch):
        cupy = self.cupy
        arrays = []
        skeleton = split_arrays(batch, arrays)
        on_device, entries = [], []
        with cupy.cuda.Device(self.device.index or 0):
            for array in arrays:
                if not isinstance(array, numpy.ndarray):
                    on_device.append(array)
                    continue
                entry = self._pinned(max(array.nbytes, 1))
                host = numpy.frombuffer(entry[0], dtype=array.dtype, count=array.size).reshape(array.shape)
                numpy.copyto(host, array)
                device_array = cupy.empty(array.shape, dtype=array.dtype)
                device_array.set(host, stream=self.stream)
                on_device.append(device_array)
                entries.append(entry)
            event = self.stream.record()
            cupy.cuda.get_current_stream().wait_event(event)
        for entry in entries:
            entry[1] = event
        return join_arrays(skeleton, on_device)
