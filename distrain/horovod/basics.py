"""hvd.init and the questions about the world: rank, size, local and cross ranks, what is built.

The world is distrain.distributed's process group: `hvd.init()` joins it with the job's
backend (the launcher's --backend; MPI under mpirun; a world of one without a launcher)
unless the program joined it already (then it is a no-op, as a second hvd.init() is in
Horovod), so Horovod and torch.distributed calls can share one program.

Local ranks number the processes on this machine; cross ranks number the machines
(`cross_rank() = rank() // local_size()`, `cross_size() = size() // local_size()`: the
launcher places ranks machine by machine, each with the same number of processes).
"""
from __future__ import annotations

import importlib.util

from .. import distributed
from . import handles
from .ops import HorovodError


def init(comm=None, process_sets=None):
    """Join the job's process group (a no-op if this process has joined it already)."""
    if comm is not None:
        raise HorovodError("hvd.init(comm=...): distrain forms the world from its launcher (python -m distrain.launch "
                           "-n N --backend mpi|ps, or mpirun); call hvd.init() without comm")
    if process_sets not in (None, [], ()):
        raise HorovodError("hvd.init(process_sets=...): process sets are not supported; every call uses the whole "
                           "world")
    if not distributed.is_initialized():
        distributed.init()
    handles.forget_all()


def shutdown():
    """Leave the process group (idempotent); handles in flight are forgotten."""
    handles.forget_all()
    distributed.shutdown()


def is_initialized() -> bool:
    return distributed.is_initialized()


def communicator(what):
    """The process group's communicator, or the error Horovod gives before hvd.init()."""
    if not distributed.is_initialized():
        raise HorovodError(f"hvd.{what}: Horovod has not been initialized; call hvd.init() first")
    return distributed.get_communicator()


def rank() -> int:
    return communicator("rank()").rank


def size() -> int:
    return communicator("size()").size


def local_rank() -> int:
    return communicator("local_rank()").local_rank


def local_size() -> int:
    return communicator("local_size()").local_size


def cross_rank() -> int:
    comm = communicator("cross_rank()")
    return comm.rank // comm.local_size


def cross_size() -> int:
    comm = communicator("cross_size()")
    return comm.size // comm.local_size


def is_homogeneous() -> bool:
    comm = communicator("is_homogeneous()")
    return comm.size % comm.local_size == 0


def mpi_threads_supported() -> bool:
    """True when the job runs on MPI initialised with MPI_THREAD_MULTIPLE (distrain's MPI communicator asks for it)."""
    comm = communicator("mpi_threads_supported()")
    if comm.name != "mpi":
        return False
    return comm.MPI.Query_thread() >= comm.MPI.THREAD_MULTIPLE


def mpi_enabled() -> bool:
    return communicator("mpi_enabled()").name == "mpi"


def mpi_built() -> bool:
    """Whether distrain can run on MPI here (mpi4py is installed: pip install 'distrain[mpi]')."""
    return importlib.util.find_spec("mpi4py") is not None


def nccl_built() -> bool:
    """Whether distrain can use NCCL here (CuPy with its NCCL bindings: pip install 'distrain[gpu]')."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        from cupy.cuda import nccl  # noqa: F401
    except Exception:  # noqa: BLE001 -- CuPy without NCCL, or without a working CUDA
        return False
    return True


def gloo_built() -> bool:
    """False: distrain has no Gloo; its own backends are mpi, ps (a parameter server, needing nothing) and nccl."""
    return False


def gloo_enabled() -> bool:
    return False


def cuda_built() -> bool:
    return importlib.util.find_spec("cupy") is not None


def rocm_built() -> bool:
    return False


def ddl_built() -> bool:
    return False


def ccl_built() -> bool:
    return False


__all__ = ["ccl_built", "communicator", "cross_rank", "cross_size", "cuda_built", "ddl_built", "gloo_built",
           "gloo_enabled", "init", "is_homogeneous", "is_initialized", "local_rank", "local_size", "mpi_built",
           "mpi_enabled", "mpi_threads_supported", "nccl_built", "rank", "rocm_built", "shutdown", "size"]
