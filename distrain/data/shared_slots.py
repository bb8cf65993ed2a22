"""The shared-memory slots that carry batches from loader workers to the main process.

A slot is one POSIX shared-memory segment (multiprocessing.shared_memory). A worker
writes a batch's arrays into the slot it was given, back to back at 64-byte-aligned
offsets, and sends only a small description (dtype, shape, offset per array, plus the
batch's non-array skeleton) through a queue; the main process builds NumPy arrays that
*view* the slot. No batch array is pickled or copied between processes.

The main process creates, grows and unlinks every segment; workers only attach. A
batch that does not fit its slot is reported back (`SlotTooSmall`) and the main process
replaces that slot with a bigger segment and asks again (NOTE [ Loader worker protocol ]
in worker_pool.py). Segment names start with `distrain_<pid>_`, so a leaked one is
recognisable in /dev/shm.

NOTE [ Slot leases ]
A batch handed to the user is a set of arrays viewing its slot, and they all have one
base object, a `SlotLease`: the slot is lent for as long as the lease lives, i.e. as long
as any array, Tensor or view of that batch is referenced. Only when the last one goes
does the lease's `__del__` give the slot back, so a batch kept in a list is never
overwritten. `__del__` can run in any thread, or inside the loader itself during a
garbage collection, so it only appends the slot number to a deque; the main process
moves returned slots to the free list before it takes one (`acquire`).

When no slot is free the pool creates one: the loader never waits for the user to let go
of a batch. Memory stays bounded: at most `lease_limit` slots are lent at once; a batch
that arrives while that many are held is copied out of its slot into ordinary memory, and
its slot is free again at once (keeping batches then costs what it costs without workers).
"""
from __future__ import annotations

import collections
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


class SlotLease:
    """The base object of a lent batch's arrays; collecting it returns the slot (NOTE [ Slot leases ])."""

    __slots__ = ("__array_interface__", "_memory", "_slot", "_returned")

    def __init__(self, memory, interface, slot, returned):
        self._memory = memory  # keeps the segment mapped even after the pool unlinked it
        self.__array_interface__ = interface  # memory's, computed once per slot (numpy reads it, never changes it)
        self._slot = slot
        self._returned = returned

    def __del__(self):
        self._returned.append(self._slot)  # deque.append: atomic, safe from any thread


class SlotPool:
    """The shared-memory slots of one set of loader workers, owned by this (the main) process.

    Each slot is free, in a worker's hands (acquired, not yet lent), or lent to a batch.
    """

    def __init__(self, count, size, lease_limit):
        self._prefix = f"distrain_{os.getpid()}_{secrets.token_hex(4)}"
        self._generation = 0
        self._initial_size = max(size, ALIGNMENT)
        self.lease_limit = lease_limit
        self._segments = []  # slot -> SharedMemory
        self._memory = []  # slot -> (uint8 array over the segment: what leases keep alive, its __array_interface__)
        self._free = []
        self._returned = collections.deque()  # slots whose lease was collected (NOTE [ Slot leases ])
        self._lent = 0
        # Created now, before any worker is forked: this also starts multiprocessing's resource
        # tracker, which the workers then share (one started after them would be one per worker).
        self._free = [self._new_slot() for _ in range(count)][::-1]

    def __len__(self):
        return len(self._segments)

    def name(self, slot):
        return self._segments[slot].name

    def size(self, slot):
        return self._segments[slot].size

    @property
    def lent(self):
        """How many slots batches still hold."""
        self._reclaim()
        return self._lent

    def acquire(self):
        """A free slot number, a new slot if every one is in use."""
        self._reclaim()
        return self._free.pop() if self._free else self._new_slot()

    def release(self, slot):
        """Give back a slot that was acquired but not lent (its batch failed, or was dropped unseen)."""
        self._free.append(slot)

    def lend(self, slot, layout):
        """The arrays `layout` describes in `slot`, lent with the slot; copies if lease_limit slots are out."""
        self._reclaim()
        memory, interface = self._memory[slot]
        if self._lent >= self.lease_limit:
            arrays = [array.copy() for array in read_arrays(memory, layout)]
            self._free.append(slot)
            return arrays
        self._lent += 1
        return read_arrays(numpy.asarray(SlotLease(memory, interface, slot, self._returned)), layout)

    def grow(self, slot, needed):
        """Replace `slot` by a segment of at least `needed` bytes (1.5x, so growth is rare)."""
        old = self._segments[slot]
        self._replace(slot, _align(int(needed * 1.5)))
        _release(old)

    def close(self):
        """Unlink every segment (idempotent); a lent batch keeps its memory until it is collected."""
        segments, self._segments, self._memory, self._free = self._segments, [], [], []
        for segment in segments:
            _release(segment)

    def _new_slot(self):
        self._segments.append(None)
        self._memory.append(None)
        self._replace(len(self._segments) - 1, self._initial_size)
        return len(self._segments) - 1

    def _create(self, size):
        self._generation += 1
        return shared_memory.SharedMemory(name=f"{self._prefix}_{self._generation}", create=True, size=size)

    def _replace(self, slot, size):
        segment = self._create(size)
        # The uint8 array takes over the mapping (it keeps the mmap alive, and every lent batch
        # keeps it): the SharedMemory object keeps only the name, to unlink, so neither its
        # close() nor its __del__ can unmap memory that arrays still view.
        memory = numpy.frombuffer(segment._mmap, numpy.uint8)
        segment._buf.release()
        segment._buf = segment._mmap = None
        segment.close()  # the file descriptor: the mapping does not need it
        self._segments[slot] = segment
        self._memory[slot] = (memory, memory.__array_interface__)

    def _reclaim(self):
        returned = self._returned
        while returned:
            slot = returned.popleft()
            self._lent -= 1
            if slot < len(self._segments):  # not a lease outliving close()
                self._free.append(slot)


def _release(segment):
    """Unlink the segment's name now; its memory is unmapped when the last array viewing it goes."""
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
