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
from .p2p import (
    check_peer,
    check_tag,
    describe,
    mismatch_text,
    peers_of,
)


def _mpi():
    from mpi4py import (
        MPI,  # initialises MPI (thread level "multiple" by mpi4py's default)
    )

    return MPI


class Completion(threading.Event):
    """Set by the progress thread when its request completed; `error`: the MPI error the request ended with."""

    error = None


class ProgressThread(threading.Thread):
    """Drives MPI's progress engine while non-blocking operations are in flight (NOTE [ MPI progress ]).

    MPICH moves a non-blocking operation only inside MPI calls. This thread makes those
    calls: every `interval` seconds it tests each request in flight (each of them: a receive
    may wait long for its sender while later collectives complete) and sets a request's
    completion when it is done, with the MPI error it ended with, if any. It alone tests the
    requests it watches (MPI forbids two threads completing one request); handles wait on
    the completions. Between requests it sleeps on an event and costs nothing.
    """

    def __init__(self, interval):
        super().__init__(name="distrain-mpi-progress", daemon=True)
        self.interval = interval
        self.pending = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopped = False

    def watch(self, request, status=None):
        completion = Completion()
        with self.lock:
            self.pending.append((request, status, completion))
            self.wake.set()
        return completion

    def run(self):
        while True:
            self.wake.wait()
            if self.stopped:
                return
            with self.lock:
                watched = list(self.pending)
                if not watched:
                    self.wake.clear()
                    continue
            finished = {id(entry) for entry in watched if self._test(*entry)}
            if finished:
                with self.lock:
                    self.pending = [entry for entry in self.pending if id(entry) not in finished]
                continue
            time.sleep(self.interval)

    @staticmethod
    def _test(request, status, completion):
        try:
            done = request.Test(status)
        except Exception as error:  # noqa: BLE001 - an MPI error (a truncated receive): the handle reports it
            completion.error, done = error, True
        if done:
            completion.set()
        return done

    def stop(self):
        self.stopped = True
        self.wake.set()
        self.join(timeout=5)


class MPIHandle(PollingHandle):
    """An MPI request; `wait` finishes it within the communicator's timeout.

    Without a progress thread the handle tests its request itself; with one, the thread
    does and the handle waits on the completion it sets. `status` (receives) is filled on
    completion; `keep` holds the buffers MPI uses until then. An MPI error ends the wait
    with a CommunicatorError, unless the handle's `finish` reads `mpi_error` itself (receives).
    """

    def __init__(self, communicator, request, what, finish=None, progress=None, status=None, peers=None, keep=None):
        super().__init__(communicator, what, finish, peers)
        self.request = request
        self.status = status
        self.keep = keep
        self.mpi_error = None
        self.completion = progress.watch(request, status) if progress is not None else None

    def _test(self):
        if self.completion is not None:
            if not self.completion.is_set():
                return False
            self.mpi_error = self.completion.error
            return True
        try:
            return self.request.Test(self.status)
        except self.communicator.MPI.Exception as error:
            self.mpi_error = error
            return True

    def _pause(self, seconds):
        if self.completion is not None:
            self.completion.wait(max(seconds, 0.05))  # woken at once when the progress thread sees completion
        else:
            time.sleep(seconds)

    def _complete(self):
        if self.mpi_error is not None and self.status is None:
            self.done = True
            self.error = CommunicatorError(f"rank {self.communicator.global_rank(self.communicator.rank)}: "
                                           f"{self.what} failed in MPI: {self.mpi_error}")
            raise self.error
        super()._complete()

    def _on_timeout(self):
        if self.status is not None:  # a receive: cancelled, so that a late message cannot land in a reused buffer
            self.request.Cancel()


class MPICommunicator(Communicator):
    """Collectives over MPI_COMM_WORLD (a duplicate of it, so user MPI traffic never mixes in), or over a
    subgroup's communicator made by `split` (which shares the parent's progress thread and liveness)."""

    name = "mpi"
    PROGRESS_MODES = ("thread", "test")

    def __init__(self, timeout=DEFAULT_TIMEOUT, progress=None, progress_interval=50e-6):
        MPI = _mpi()
        progress = progress or os.environ.get("DISTRAIN_MPI_PROGRESS", "thread")
        if progress not in self.PROGRESS_MODES:
            raise ValueError(f"MPI progress must be one of {self.PROGRESS_MODES}, got {progress!r} "
                             "(argument progress= or $DISTRAIN_MPI_PROGRESS)")
        thread = None
        if progress == "thread":
            if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
                raise CommunicatorError(f"rank {MPI.COMM_WORLD.Get_rank()}: MPI was initialised without "
                                        "MPI_THREAD_MULTIPLE, which the progress thread needs; leave "
                                        "mpi4py.rc.thread_level at 'multiple' or use progress='test'")
            thread = ProgressThread(progress_interval)
        self._attach(MPI, MPI.COMM_WORLD.Dup(), float(timeout), progress, thread)
        if thread is not None:
            thread.start()

    def _attach(self, MPI, comm, timeout, progress, thread):
        """Take `comm` (this object's own: close() frees it) as the communicator."""
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.local_comm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.local_comm.Get_rank()
        self.local_size = self.local_comm.Get_size()
        self.timeout = timeout
        self._ops = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        self._closed = False
        self.progress = progress
        self._progress_thread = thread
        self.tag_limit = comm.Get_attr(MPI.TAG_UB)  # the largest tag is distrain's own (split's handshake)

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
        MPIHandle(self, self.comm.Ibcast(buffer, root=root), f"broadcast from rank {self.global_rank(root)}",
                 copy_back).wait()
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

    # -- point to point (NOTE [ Point-to-point messages ] in p2p.py) --------------------------------------------
    def isend(self, array, dst, tag=0):
        dst = check_peer(self, dst, "send", "dst")
        tag = check_tag(self, tag, "send")
        buffer, _ = host_staging(contiguous_copy_if_needed(array), "send")
        header = _message_header(buffer)
        request = self._start(self.comm.Isend, header, buffer, dest=dst, tag=tag)
        what = f"send of {describe(buffer.dtype, buffer.size)} to rank {self.global_rank(dst)} (tag {tag})"
        return MPIHandle(self, request, what, progress=self._progress_thread, peers=(dst,), keep=(header, buffer))

    def irecv(self, array, src=None, tag=0):
        if src is not None:
            src = check_peer(self, src, "recv", "src")
        tag = check_tag(self, tag, "recv")
        buffer, copy_back = host_staging(array, "recv")
        header = numpy.zeros_like(_message_header(buffer))
        status = self.MPI.Status()
        request = self._start(self.comm.Irecv, header, buffer, source=self.MPI.ANY_SOURCE if src is None else src,
                              tag=tag)
        sender = "any rank" if src is None else f"rank {self.global_rank(src)}"
        what = f"recv of {describe(buffer.dtype, buffer.size)} from {sender} (tag {tag})"
        handle = MPIHandle(self, request, what, progress=self._progress_thread, status=status,
                           peers=peers_of(self, src), keep=(header, buffer))
        handle.finish = lambda: self._received(handle, header, buffer, copy_back, tag)
        return handle

    def _start(self, post, header, buffer, **where):
        """Post one message of `header` then `buffer`, as they lie in memory (an MPI struct type: no copy)."""
        MPI = self.MPI
        if buffer.nbytes > 2 ** 31 - 1 - header.nbytes:
            raise ValueError(f"rank {self.global_rank(self.rank)}: a message of {buffer.nbytes} bytes is over MPI's "
                             "2 GiB count limit; send it in parts")
        parts = [header] + ([buffer] if buffer.nbytes else [])
        datatype = MPI.Datatype.Create_struct([part.nbytes for part in parts],
                                              [MPI.Get_address(part) for part in parts], [MPI.BYTE] * len(parts))
        datatype.Commit()
        try:
            return post([MPI.BOTTOM, 1, datatype], **where)
        finally:
            datatype.Free()  # MPI keeps it until the message is done

    def _received(self, handle, header, buffer, copy_back, tag):
        """The sender's rank, once the message is checked against the buffer (NOTE [ Point-to-point messages ])."""
        MPI = self.MPI
        error = handle.mpi_error
        truncated = error is not None and error.Get_error_class() == MPI.ERR_TRUNCATE
        if error is not None and not truncated:
            raise CommunicatorError(f"rank {self.global_rank(self.rank)}: {handle.what} failed in MPI: {error}")
        sender = handle.status.Get_source()
        theirs = _described_header(header)
        if truncated or theirs != (buffer.dtype.str, buffer.size) or \
                handle.status.Get_count(MPI.BYTE) != header.nbytes + buffer.nbytes:
            text = describe(numpy.dtype(theirs[0]), theirs[1]) if theirs else "an unreadable or larger message"
            raise CommunicatorError(mismatch_text(self.global_rank(self.rank), self.global_rank(sender), tag,
                                                  describe(buffer.dtype, buffer.size), text))
        if copy_back is not None:
            copy_back()
        return sender

    # -- subgroups (NOTE [ Subgroups ] in p2p.py) -----------------------------------------------------------------
    def _subgroup(self, ranks, key):
        # every member is here (base.split): Create_group, which has no timeout, completes
        everyone = self.comm.Get_group()
        members = everyone.Incl(list(ranks))
        try:
            comm = self.comm.Create_group(members, tag=self.tag_limit)
        finally:
            members.Free()
            everyone.Free()
        group = MPICommunicator.__new__(MPICommunicator)
        group._attach(self.MPI, comm, self.timeout, self.progress, self._progress_thread)
        group.global_ranks = tuple(self.global_rank(rank) for rank in ranks)
        group.liveness, group.group_key, group._owns_progress = self.liveness, key, False
        return group

    _owns_progress = True  # the whole job's communicator stops the progress thread its subgroups share

    def close(self):
        if not self._closed:
            self._closed = True
            if self._progress_thread is not None and self._owns_progress:
                self._progress_thread.stop()
            self.local_comm.Free()
            self.comm.Free()


P2P_MAGIC = 0x3170327074736964  # b"distp2p1": a distrain message's header


def _message_header(buffer):
    """The 4 int64 that precede a message: magic, the dtype (its 8-byte str, e.g. '<f4'), the element count, 0."""
    code = int.from_bytes(buffer.dtype.str.encode().ljust(8, b"\0")[:8], "little", signed=True)
    return numpy.array([P2P_MAGIC, code, buffer.size, 0], dtype=numpy.int64)


def _described_header(header):
    """(dtype str, element count) of a received header, or None if it is not one."""
    if header[0] != P2P_MAGIC:
        return None
    try:
        dtype = numpy.dtype(int(header[1]).to_bytes(8, "little", signed=True).rstrip(b"\0").decode("ascii"))
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    return dtype.str, int(header[2])
