"""The NCCL communicator (cupy.cuda.nccl): GPU-to-GPU collectives, one GPU per rank.

How a collective is ordered against the computation (shared/DESIGN.md, CuPy + MPI lessons):

- Collectives run on the communicator's own CUDA stream, so an allreduce of one gradient
  bucket proceeds while backward keeps launching kernels on the compute stream.
- Before a collective, an event recorded on the compute stream is waited for *by the
  communication stream*: the bucket's gradients are complete before NCCL reads them,
  without blocking the host.
- `Handle.wait()` polls the collective's completion event on the host with the job's
  timeout (a rank that never arrives would leave NCCL spinning forever: on timeout the
  communicator is aborted and a CommunicatorError is raised), then makes the compute
  stream wait on that event too, so whatever runs next (the optimizer) sees the result.

The NCCL unique id that lets the ranks find each other is made by rank 0 and handed to
the others through MPI when the job runs under an MPI launcher, else through the
launcher's rendezvous server (`python -m distrain.launch -n N --backend nccl`).

NumPy arrays are accepted for convenience (copied to the GPU and back); small Python values
(allgather_object) travel as msgpack bytes in a device buffer, never pickle (plain_values.py).
"""
from __future__ import annotations

import os

import numpy

from .base import (
    DEFAULT_TIMEOUT,
    Communicator,
    CommunicatorError,
    PollingHandle,
    check_op,
    check_root,
    contiguous_copy_if_needed,
    launched_rank_or_fail,
)
from .ranks import under_mpi_launcher

UNIQUE_ID_KEY = "distrain/nccl-unique-id"


def _cupy():
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as error:
        raise ImportError(f"the 'nccl' communicator needs CuPy built with NCCL ({error}): "
                          "pip install 'distrain[gpu]'; or use backend 'mpi' or 'ps'", name=error.name) from None
    return cupy, nccl


def nccl_dtype(nccl, dtype):
    table = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
             "int8": nccl.NCCL_INT8, "uint8": nccl.NCCL_UINT8, "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64}
    if dtype.name not in table:
        raise TypeError(f"NCCL cannot reduce {dtype} arrays; one of {sorted(table)}")
    return table[dtype.name]


def _encode_unique_id(unique_id):
    """Bytes for the unique id, whichever form this CuPy returns: bytes (newer CuPy), or a tuple of C
    chars, which are signed on x86 (-128..127) and unsigned on ARM (0..255)."""
    if isinstance(unique_id, bytes):
        return b"B" + unique_id
    kind = b"S" if min(unique_id) < 0 else b"U"
    return kind + bytes(value & 0xFF for value in unique_id)


def _decode_unique_id(raw):
    kind, body = raw[:1], raw[1:]
    if kind == b"B":
        return body
    if kind == b"U":
        return tuple(body)
    return tuple(numpy.frombuffer(body, dtype=numpy.int8).tolist())


def broadcast_bytes_over_mpi(mpi_comm, raw, limit=4096):
    """Root's `raw` bytes on every rank (others pass None), through MPI buffer broadcasts of a length
    then the bytes: mpi4py's lowercase bcast would pickle, and nothing from another rank is unpickled."""
    length = numpy.array([-1 if raw is None else len(raw)], dtype=numpy.int64)
    mpi_comm.Bcast(length, root=0)
    if not 0 <= length[0] <= limit:
        raise CommunicatorError(f"the NCCL unique id broadcast by rank 0 claims {length[0]} bytes (expected at most "
                                f"{limit}); is every rank running the same distrain?")
    buffer = numpy.empty(int(length[0]), dtype=numpy.uint8)
    if raw is not None:
        buffer[:] = numpy.frombuffer(raw, dtype=numpy.uint8)
    mpi_comm.Bcast(buffer, root=0)
    return buffer.tobytes()


class NCCLHandle(PollingHandle):
    """A collective on the communication stream, complete when its event is."""

    def __init__(self, communicator, event, what, finish=None):
        super().__init__(communicator, f"NCCL {what}", finish)
        self.event = event

    def _test(self):
        return self.event.done

    def _on_timeout(self):
        self.communicator.abort()  # NCCL would spin on the device forever

    def _complete(self):
        self.communicator.cupy.cuda.get_current_stream().wait_event(self.event)  # the compute stream sees the result
        super()._complete()


class NCCLCommunicator(Communicator):
    """One NCCL communicator over all ranks; this rank drives GPU `local_rank` (modulo the GPU count)."""

    name = "nccl"

    def __init__(self, timeout=DEFAULT_TIMEOUT, rank=None, world_size=None, local_rank=None):
        cupy, nccl = _cupy()
        self.cupy, self.nccl = cupy, nccl
        self.timeout = float(timeout)
        mpi_comm = None
        if rank is None:
            if under_mpi_launcher():
                from mpi4py import MPI

                mpi_comm = MPI.COMM_WORLD
                local = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=mpi_comm.Get_rank())
                rank, world_size, local_rank, self.local_size = (mpi_comm.Get_rank(), mpi_comm.Get_size(),
                                                                 local.Get_rank(), local.Get_size())
                local.Free()
            else:
                rank, world_size, local_rank, self.local_size = launched_rank_or_fail("nccl")
        else:
            local_rank = rank if local_rank is None else local_rank
            self.local_size = world_size
        self.rank, self.size, self.local_rank = rank, world_size, local_rank
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            raise CommunicatorError(f"rank {rank}: the nccl backend needs a GPU and none is visible; use backend='mpi'")
        self.device = cupy.cuda.Device(local_rank % count)
        self.device.use()  # before any allocation, or every rank would create a context on GPU 0
        unique_id = self._exchange_unique_id(mpi_comm)
        self.comm = nccl.NcclCommunicator(world_size, unique_id, rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._aborted = False

    def _exchange_unique_id(self, mpi_comm):
        """Rank 0's NCCL unique id, on every rank (through MPI, or the launcher's rendezvous server)."""
        raw = _encode_unique_id(self.nccl.get_unique_id()) if self.rank == 0 else None
        if mpi_comm is not None:
            return _decode_unique_id(broadcast_bytes_over_mpi(mpi_comm, raw))
        from .ps import protocol
        from .ps.client import ServerConnection

        address = os.environ.get(protocol.ADDRESS_ENVIRONMENT_VARIABLE)
        if not address:
            raise CommunicatorError(
                f"rank {self.rank}: the nccl backend outside MPI needs the launcher's rendezvous "
                f"({protocol.ADDRESS_ENVIRONMENT_VARIABLE}): start the job with "
                "`python -m distrain.launch -n N --backend nccl script.py` or under mpirun")
        rendezvous = ServerConnection(address, self.rank, self.size, timeout=self.timeout)
        try:
            if raw is not None:
                rendezvous.store_set(UNIQUE_ID_KEY, raw)
            return _decode_unique_id(rendezvous.store_get(UNIQUE_ID_KEY))
        finally:
            rendezvous.close()

    # -- arrays -----------------------------------------------------------------------------
    def _device_buffer(self, array, what):
        """(a contiguous device array to communicate, a function writing the result back or None)."""
        cupy = self.cupy
        if isinstance(array, numpy.ndarray):
            if not array.flags.c_contiguous:
                raise ValueError(f"{what}: the array must be C-contiguous (shape {array.shape}); pass .copy()")
            staged = cupy.asarray(array)
            return staged, lambda: staged.get(out=array)
        if not array.flags.c_contiguous:
            raise ValueError(f"{what}: the array must be C-contiguous for an in-place collective "
                             f"(shape {array.shape}, strides {array.strides}); pass .copy() or a contiguous slice")
        if array.device.id != self.device.id:
            raise CommunicatorError(f"rank {self.rank}: {what} of an array on GPU {array.device.id}, but this rank's "
                                    f"NCCL communicator drives GPU {self.device.id}")
        return array, None

    def _start(self, launch, what, finish=None):
        """Run `launch(stream_pointer)` on the communication stream after the compute stream's work so far."""
        cupy = self.cupy
        if self._aborted:
            raise CommunicatorError(f"rank {self.rank}: the NCCL communicator was aborted after an earlier timeout")
        ready = cupy.cuda.Event(disable_timing=True)
        ready.record(cupy.cuda.get_current_stream())
        self.stream.wait_event(ready)
        launch(self.stream.ptr)
        self.comm.check_async_error()
        if finish is not None:
            with self.stream:
                finish()
            finish = None
        done = cupy.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return NCCLHandle(self, done, what, finish)

    def allreduce_async(self, array, op="sum"):
        check_op(op)
        buffer, copy_back = self._device_buffer(array, "allreduce")
        if op == "mean" and buffer.dtype.kind not in "fc":
            raise TypeError(f"allreduce op 'mean' needs a floating-point array, got {buffer.dtype}")
        nccl = self.nccl
        reduce = {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}[op]
        kind = nccl_dtype(nccl, buffer.dtype)

        def scale():
            if op == "mean":
                self.cupy.divide(buffer, self.size, out=buffer)

        handle = self._start(lambda stream: self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, kind,
                                                                reduce, stream),
                             f"allreduce({op}) of {buffer.nbytes} bytes", scale)
        if copy_back is not None:
            handle.finish = copy_back
        return handle

    def broadcast(self, array, root=0):
        check_root(self, root)
        buffer, copy_back = self._device_buffer(array, "broadcast")
        kind = nccl_dtype(self.nccl, buffer.dtype)
        handle = self._start(lambda stream: self.comm.bcast(buffer.data.ptr, buffer.size, kind, root, stream),
                             f"broadcast from rank {root}")
        handle.finish = copy_back
        handle.wait()
        return array

    def allgather(self, array):
        on_host = isinstance(array, numpy.ndarray)
        buffer, _ = self._device_buffer(contiguous_copy_if_needed(array), "allgather")
        out = self.cupy.empty((self.size,) + buffer.shape, dtype=buffer.dtype)
        kind = nccl_dtype(self.nccl, buffer.dtype)
        self._start(lambda stream: self.comm.allGather(buffer.data.ptr, out.data.ptr, buffer.size, kind, stream),
                    f"allgather of {buffer.nbytes} bytes").wait()
        return out.get() if on_host else out

    def barrier(self):
        self.allreduce(self.cupy.zeros(1, dtype=self.cupy.float32))

    def abort(self):
        if not self._aborted:
            self._aborted = True
            self.comm.abort()

    def close(self):
        if getattr(self, "comm", None) is not None and not self._aborted:
            self.stream.synchronize()
            self.comm.destroy()
        self.comm = None
