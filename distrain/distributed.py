"""distrain.distributed: the process group this training process belongs to.

    distrain.distributed.init()            # "auto": MPI under an MPI launcher, else a world of one
    rank, size = distrain.distributed.get_rank(), distrain.distributed.get_world_size()

`init(backend=...)` picks a communicator (distrain.comm): "local" (one process), "mpi"
(under mpirun/mpiexec/srun), or "auto". Every wait inside a collective gives up after
`timeout` seconds with an error instead of hanging.
"""
from __future__ import annotations

from .comm import create_communicator
from .comm.mpi import DEFAULT_TIMEOUT, under_mpi_launcher
from .parallel import DistributedOptimizer, broadcast_parameters  # Horovod's names, here too  # noqa: F401

_communicator = None


def init(backend="auto", timeout=DEFAULT_TIMEOUT):
    """Join the process group; returns the communicator (also kept for get_rank() etc.)."""
    global _communicator
    if _communicator is not None:
        raise RuntimeError(f"distrain.distributed is already initialised ({_communicator!r}); call shutdown() first")
    if backend == "auto":
        backend = "mpi" if under_mpi_launcher() else "local"
    _communicator = create_communicator(backend, **({"timeout": timeout} if backend == "mpi" else {}))
    return _communicator


def is_initialized() -> bool:
    return _communicator is not None


def get_communicator():
    if _communicator is None:
        raise RuntimeError("distrain.distributed is not initialised: call distrain.distributed.init() first")
    return _communicator


def get_rank() -> int:
    return get_communicator().rank


def get_world_size() -> int:
    return get_communicator().size


def shutdown():
    """Leave the process group (idempotent)."""
    global _communicator
    if _communicator is not None:
        _communicator.close()
        _communicator = None
