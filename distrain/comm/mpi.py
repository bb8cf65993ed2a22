"""The MPI communicator (mpi4py): collectives on NumPy buffers in place, non-blocking with timeouts.

Each collective is started non-blocking (Iallreduce, Ibcast, ...) and finished by
`Handle.wait`, which polls `Test()` rather than blocking in `Wait()`: polling is what
lets a wait give up after `timeout` seconds with an error instead of hanging forever when
a rank never arrives (shared/DESIGN.md: nothing waits without a timeout), and each `Test`
also gives MPI a chance to progress the operation.

CuPy arrays are staged through host memory (copy down, reduce, copy back in `wait`):
correct with any MPI; a CUDA-aware MPI or NCCL is the fast path for GPUs.
"""
from __future__ import annotations

import collections
import os
import threading
import time

import numpy

from .base import (
    DEFAULT_TIMEOUT,
    Communicator,
    CommunicatorError,
    PollingHandle,
    check_op,
    check_root,
    contiguous_copy_if_needed,
    host_staging,
)


def _mpi():
    from mpi4py import (
        MPI,  # initialises MPI (thread level "multiple" by mpi4py's default)
    )

    return MPI


class ProgressThread(threading.Thread):
    """Drives MPI's progress engine while non-blocking collectives are in flight (NOTE [ MPI progress ]).

    MPICH moves a non-blocking collective only inside MPI calls. This thread makes those
    calls: it tests the oldest request in flight every `interval` seconds (MPICH's progress
    engine is global, so testing one request advances them all) and sets each request's
    flag when it completes. It alone tests the requests it watches (MPI forbids two threads
    completing one request); handles wait on the flags. Between requests it sleeps on an
    event and costs nothing.
    """

    def __init__(self, interval):
        super().__init__(name="distrain-mpi-progress", daemon=True)
        self.interval = interval
        self.pending = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopped = False

    def watch(self, request):
        flag = threading.Event()
        with self.lock:
            self.pending.append((request, flag))
            self.wake.set()
        return flag

    def run(self):
        while True:
            self.wake.wait()
            if self.stopped:
                return
            with self.lock:
                head = self.pending[0] if self.pending else None
                if head is None:
                    self.wake.clear()
                    continue
            request, flag = head
            if request.Test():
                flag.set()
                with self.lock:
                    self.pending.popleft()
                continue
            time.sleep(self.interval)

    def stop(self):
        self.stopped = True
        self.wake.set()
        self.join(timeout=5)


class MPIHandle(PollingHandle):
    """An MPI request; `wait` finishes it within the communicator's timeout.

    Without a progress thread the handle tests its request itself; with one, the thread
    does and the handle waits on the flag it sets.
    """

    def __init__(self, communicator, request, what, finish=None, progress=None):
        super().__init__(communicator, what, finish)
        self.request = request
        self.flag = progress.watch(request) if progress is not None else None

    def _test(self):
        return self.flag.is_set() if self.flag is not None else self.request.Test()

    def _pause(self, seconds):
        if self.flag is not None:
            self.flag.wait(max(seconds, 0.05))  # woken at once when the progress thread sees completion
        else:
            time.sleep(seconds)


class MPICommunicator(Communicator):
    """Collectives over MPI_COMM_WORLD (a duplicate of it, so user MPI traffic never mixes in)."""

    name = "mpi"
    PROGRESS_MODES = ("thread", "test")

    def __init__(self, timeout=DEFAULT_TIMEOUT, progress=None, progress_interval=50e-6):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.local_comm = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.local_comm.Get_rank()
        self.local_size = self.local_comm.Get_size()
        self.timeout = float(timeout)
        self._ops = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        self._closed = False
        progress = progress or os.environ.get("DISTRAIN_MPI_PROGRESS", "thread")
        if progress not in self.PROGRESS_MODES:
            raise ValueError(f"MPI progress must be one of {self.PROGRESS_MODES}, got {progress!r} "
                             "(argument progress= or $DISTRAIN_MPI_PROGRESS)")
        self.progress = progress
        self._progress_thread = None
        if progress == "thread":
            if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
                raise CommunicatorError(f"rank {self.rank}: MPI was initialised without MPI_THREAD_MULTIPLE, which the "
                                        "progress thread needs; leave mpi4py.rc.thread_level at 'multiple' or use "
                                        "progress='test'")
            self._progress_thread = ProgressThread(progress_interval)
            self._progress_thread.start()

    # -- arrays -----------------------------------------------------------------------------
    def allreduce_async(self, array, op="sum"):
        check_op(op)
        buffer, copy_back = host_staging(array, "allreduce")
        if op == "mean" and buffer.dtype.kind not in "fc":
            raise TypeError(f"allreduce op 'mean' needs a floating-point array, got {buffer.dtype}")
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self._ops[op])

        def finish():
            if op == "mean":
                numpy.divide(buffer, self.size, out=buffer)
            if copy_back is not None:
                copy_back()

        return MPIHandle(self, request, f"allreduce({op}) of {buffer.nbytes} bytes", finish, self._progress_thread)

    def broadcast(self, array, root=0):
        check_root(self, root)
        buffer, copy_back = host_staging(array, "broadcast")
        MPIHandle(self, self.comm.Ibcast(buffer, root=root), f"broadcast from rank {root}", copy_back).wait()
        return array

    def allgather(self, array):
        buffer, _ = host_staging(contiguous_copy_if_needed(array), "allgather")
        out = numpy.empty((self.size,) + buffer.shape, dtype=buffer.dtype)
        MPIHandle(self, self.comm.Iallgather(buffer, out), f"allgather of {buffer.nbytes} bytes").wait()
        if not isinstance(array, numpy.ndarray):
            import cupy

            return cupy.asarray(out)
        return out

    def barrier(self):
        MPIHandle(self, self.comm.Ibarrier(), "barrier").wait()

    def close(self):
        if not self._closed:
            self._closed = True
            if self._progress_thread is not None:
                self._progress_thread.stop()
            self.local_comm.Free()
            self.comm.Free()
