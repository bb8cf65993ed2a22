"""The ring of shared-memory slots that carries batches from loader workers to the main process.

A slot is one POSIX shared-memory segment (multiprocessing.shared_memory). A worker
writes a batch's arrays into the slot it was given, back to back at 64-byte-aligned
offsets, and sends only a small description (dtype, shape, offset per array, plus the
batch's non-array skeleton) through a queue; the main process builds NumPy arrays that
*view* the slot. No batch array is pickled or copied between processes.

The main process creates, grows and unlinks every segment; workers only attach. A
batch that does not fit its slot is reported back (`SlotTooSmall`) and the main process
replaces that slot with a bigger segment and asks again (NOTE [ Loader worker protocol ]
in loader.py). Segment names start with `distrain_<pid>_`, so a leaked one is
recognisable in /dev/shm.
"""
from __future__ import annotations

import os
import secrets
from multiprocessing import shared_memory

import numpy

ALIGNMENT = 64


def _align(offset):
    return -(-offset // ALIGNMENT) * ALIGNMENT


class SlotTooSmall(Exception):
    """A batch needs `needed` bytes, more than its slot holds."""

    def __init__(self, needed):
        super().__init__(needed)
        self.needed = needed


class SlotRing:
    """`count` shared-memory slots owned by this (the main) process."""

    def __init__(self, count, size):
        self._prefix = f"distrain_{os.getpid()}_{secrets.token_hex(4)}"
        self._generation = 0
        self.segments = [self._create(max(size, ALIGNMENT)) for _ in range(count)]

    def _create(self, size):
        self._generation += 1
        return shared_memory.SharedMemory(name=f"{self._prefix}_{self._generation}", create=True, size=size)

    def __len__(self):
        return len(self.segments)

    def name(self, slot):
        return self.segments[slot].name

    def size(self, slot):
        return self.segments[slot].size

    def buffer(self, slot):
        return self.segments[slot].buf

    def grow(self, slot, needed):
        """Replace `slot` by a segment of at least `needed` bytes (1.5x, so growth is rare)."""
        old = self.segments[slot]
        self.segments[slot] = self._create(_align(int(needed * 1.5)))
        _release(old)

    def close(self):
        """Unmap and unlink every segment (idempotent)."""
        segments, self.segments = self.segments, []
        for segment in segments:
            _release(segment)


def _release(segment):
    """Unlink the segment's name now; unmap its memory only when no array views it any more.

    Arrays built on a slot (read_arrays) have the segment's mmap object as their base but
    hold no buffer export on it, so SharedMemory.close() would unmap memory they still
    point to (a crash on the next read). So the segment object lets go of its mmap instead
    of closing it: the mmap is freed, and unmapped, with the last array that uses it.
    """
    view, segment._buf, segment._mmap = segment._buf, None, None
    if view is not None:
        view.release()
    try:
        segment.unlink()
    except FileNotFoundError:
        pass


class SlotAttachments:
    """A worker's handles on the main process's slots, one per slot number.

    When the main process has replaced a slot (grown it), the task names the new segment:
    the handle on the old one is dropped and the new one attached.
    """

    def __init__(self):
        self._segments = {}  # slot number -> SharedMemory

    def buffer(self, slot, name):
        segment = self._segments.get(slot)
        if segment is None or segment.name != name:
            if segment is not None:
                segment.close()
            # Python < 3.13 registers an attached segment with the resource tracker too; the
            # workers share the main process's tracker, so that is the main's own entry
            # again (a set): nothing to undo, and the main's unlink unregisters it.
            segment = shared_memory.SharedMemory(name=name, create=False)
            self._segments[slot] = segment
        return segment.buf

    def close(self):
        for segment in self._segments.values():
            try:
                segment.close()
            except BufferError:
                pass
        self._segments.clear()


def write_arrays(buffer, arrays):
    """Copy `arrays` into `buffer` back to back; return [(dtype str, shape, offset)] or raise SlotTooSmall."""
    layout, offset = [], 0
    for array in arrays:
        layout.append((array.dtype.str, array.shape, offset))
        offset = _align(offset + array.nbytes)
    if offset > len(buffer):
        raise SlotTooSmall(offset)
    for array, (dtype, shape, start) in zip(arrays, layout):
        view = numpy.ndarray(shape, dtype=array.dtype, buffer=buffer, offset=start)
        numpy.copyto(view, array, casting="no")
    return layout


def read_arrays(buffer, layout):
    """NumPy arrays viewing `buffer` as `write_arrays` laid them out (no copy)."""
    return [numpy.ndarray(shape, dtype=numpy.dtype(dtype), buffer=buffer, offset=offset)
            for dtype, shape, offset in layout]
