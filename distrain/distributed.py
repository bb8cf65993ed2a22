"""distrain.distributed: the process group this training process belongs to.

    distrain.distributed.init()            # "auto": MPI under an MPI launcher, else a world of one
    rank, size = distrain.distributed.get_rank(), distrain.distributed.get_world_size()

`init(backend=...)` picks a communicator (distrain.comm): "local" (one process), "mpi"
(under mpirun/mpiexec/srun), "nccl" (one GPU per rank), "ps" (a ZeroMQ parameter
server), or "auto" (see `choose_backend`). Every wait inside a collective gives up after
`timeout` seconds with an error instead of hanging.
"""
from __future__ import annotations

import os

from .comm import create_communicator
from .comm.base import DEFAULT_TIMEOUT
from .comm.ranks import discover_ranks, under_mpi_launcher
from .engine.backend import cuda_device_count
from .parallel import (  # Horovod's names, here too  # noqa: F401
    DistributedOptimizer,
    broadcast_parameters,
)

_communicator = None


def init(backend="auto", timeout=DEFAULT_TIMEOUT):
    """Join the process group; returns the communicator (also kept for get_rank() etc.)."""
    global _communicator
    if _communicator is not None:
        raise RuntimeError(f"distrain.distributed is already initialised ({_communicator!r}); call shutdown() first")
    if backend == "auto":
        backend = choose_backend()
    _communicator = create_communicator(backend, timeout=timeout)
    from . import timeline

    try:  # $DISTRAIN_TIMELINE: record this rank's comm events (distrain/timeline), finished by shutdown()
        timeline.from_environment(_communicator.rank, _communicator.size, merge_timeout=timeout)
    except BaseException:
        shutdown()
        raise
    return _communicator


def choose_backend(environ=os.environ):
    """What init("auto") uses: the launcher's --backend, else nccl for several ranks with GPUs and
    cupy, mpi under an MPI launcher, ps when a parameter server is given, else local."""
    from .comm.ps.protocol import ADDRESS_ENVIRONMENT_VARIABLE

    if environ.get("DISTRAIN_BACKEND"):
        return environ["DISTRAIN_BACKEND"]
    _, size, _ = discover_ranks(environ)
    if size > 1 and (under_mpi_launcher(environ) or ADDRESS_ENVIRONMENT_VARIABLE in environ) and cuda_device_count():
        return "nccl"
    if under_mpi_launcher(environ):
        return "mpi"
    if ADDRESS_ENVIRONMENT_VARIABLE in environ:
        return "ps"
    return "local"


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
        from . import timeline
        from .comm import liveness

        try:
            timeline.finish_from_environment()  # rank 0 merges every rank's part (waiting for them, with a timeout)
        finally:
            liveness.detach(_communicator.liveness)
            _communicator.close()
            _communicator = None
