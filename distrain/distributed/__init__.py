"""distrain.distributed: the process group this training process belongs to.

    distrain.distributed.init()            # "auto": MPI under an MPI launcher, else a world of one
    rank, size = distrain.distributed.get_rank(), distrain.distributed.get_world_size()

`init(backend=...)` picks a communicator (distrain.comm): "local" (one process), "mpi"
(under mpirun/mpiexec/srun), "nccl" (one GPU per rank), "ps" (a ZeroMQ parameter
server), or "auto" (see `choose_backend`). Every wait inside a collective gives up after
`timeout` seconds with an error instead of hanging.
"""
from __future__ import annotations

import atexit
import os

from ..comm import create_communicator
from ..comm.base import DEFAULT_TIMEOUT
from ..comm.ranks import discover_ranks, under_mpi_launcher
from ..engine.backend import cuda_device_count
from ..collectives import (  # torch.distributed's collectives  # noqa: F401
    ReduceOp,
    Work,
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    all_to_all,
    barrier,
    broadcast,
    broadcast_object_list,
    gather,
    reduce,
    reduce_scatter,
    scatter,
)
from .groups import (  # torch.distributed's process groups  # noqa: F401
    GroupMember,
    ProcessGroup,
    get_global_rank,
    get_group_rank,
    get_process_group_ranks,
    group,
    new_group,
)
from .p2p import P2POp, batch_isend_irecv, irecv, isend, recv, send  # noqa: F401
from ..parallel import (  # Horovod's names, here too  # noqa: F401
    DistributedOptimizer,
    broadcast_parameters,
)

_communicator = None
_meeting = None  # the launcher-less rendezvous this process joined (distrain/rendezvous.py), if any


def init(backend="auto", timeout=DEFAULT_TIMEOUT, partition_mb=None, ps_mode=None, staleness=None,
         staleness_damping=None):
    """Join the process group; returns the communicator (also kept for get_rank() etc.).

    The parameter-server backend's own options:
    - partition_mb: with several servers, the size (MiB) of the partitions a large allreduce
      is split into, one server each (default $DISTRAIN_PS_PARTITION_MB, else 4; NOTE
      [ Partitions on several servers ] in comm/ps/partitions.py).
    - ps_mode: "sync" (default, or $DISTRAIN_PS_MODE) averages gradients as MPI does;
      "async" makes DistributedDataParallel push gradients to the servers, which run the
      optimizer, with ranks at most `staleness` steps apart (an int, or math.inf; default 0,
      which trains exactly as sync) and, with staleness_damping=True, the learning rate of
      stale gradients damped (NOTE [ Stale synchronous parallel ] in comm/ps/stale_synchronous.py).
    """
    global _communicator
    if _communicator is not None:
        raise RuntimeError(f"distrain.distributed is already initialised ({_communicator!r}); call shutdown() first")
    if backend == "auto":
        backend = choose_backend()
    options = {name: value for name, value in (("partition_mb", partition_mb), ("ps_mode", ps_mode),
                                                ("staleness", staleness), ("staleness_damping", staleness_damping))
               if value is not None}
    for name, value in options.items():
        if backend != "ps":
            raise ValueError(f"init: {name}={value!r} is for the parameter-server backend (\"ps\"), "
                             f"but this job uses {backend!r}; leave it out")
    # Asynchronous parameter-server jobs let ranks come and go (a rank that dies is dropped, a restarted one joins):
    # the servers watch the ranks' connections (NOTE [ Stale synchronous parallel ]), and the liveness side channel,
    # which ends every wait when any rank is lost, would stop the others.
    from ..comm.ps import modes

    lasting = backend != "ps" or modes.ps_mode(ps_mode) == "sync"
    _communicator = create_communicator(backend, timeout=timeout, liveness=lasting, **options)
    from .. import timeline

    try:  # $DISTRAIN_TIMELINE: record this rank's comm events (distrain/timeline), finished by shutdown()
        timeline.from_environment(_communicator.rank, _communicator.size, merge_timeout=timeout)
    except BaseException:
        shutdown()
        raise
    return _communicator


def choose_backend(environ=os.environ):
    """What init("auto") uses: the launcher's --backend, else nccl for several ranks with GPUs and
    cupy, mpi under an MPI launcher, ps when a parameter server is given, else local."""
    from ..comm.ps.protocol import (
        ADDRESS_ENVIRONMENT_VARIABLE,
        ADDRESSES_ENVIRONMENT_VARIABLE,
    )

    if environ.get("DISTRAIN_BACKEND"):
        return environ["DISTRAIN_BACKEND"]
    _, size, _ = discover_ranks(environ)
    server = ADDRESS_ENVIRONMENT_VARIABLE in environ or ADDRESSES_ENVIRONMENT_VARIABLE in environ
    if size > 1 and (under_mpi_launcher(environ) or server) and cuda_device_count():
        return "nccl"
    if under_mpi_launcher(environ):
        return "mpi"
    if server:
        return "ps"
    return "local"


def init_process_group(backend=None, init_method=None, world_size=-1, rank=-1, timeout=None, store=None,
                       group_name="", pg_options=None, device_id=None):
    """torch.distributed.init_process_group over distrain's communicators (one process group per process).

    Where the ranks come from:
    - a launcher (`python -m distrain.launch`, with torchrun's flags too, or mpirun/srun):
      its numbering; `rank`/`world_size`, when given, must agree with it;
    - no launcher (processes of `distrain.multiprocessing.spawn`, torchrun's environment,
      a script run once per rank): `init_method` "env://" (the default: MASTER_ADDR,
      MASTER_PORT) or "tcp://HOST:PORT" names rank 0's address, and rank/world_size come
      from the arguments or RANK/WORLD_SIZE. Rank 0 serves the rendezvous there and the
      ranks run as a parameter-server job (distrain/rendezvous.py, authenticated).

    backend: "gloo" (and None) is whatever this job was started with: the launcher's
    --backend, else MPI under an MPI launcher, else the parameter server (a launcher's, or
    the rendezvous's), else a world of one; "mpi", "nccl", "ps" and "local" ask for that
    communicator. timeout: seconds or a datetime.timedelta. group_name and device_id are
    accepted and have nothing to do (one process group; a CPU process or the launcher's GPU).
    """
    if pg_options is not None:
        raise ValueError("init_process_group: pg_options= (gloo/nccl tuning) is not supported: distrain's "
                         "communicators take their settings from distrain.distributed.init and the launcher")
    if store is not None:
        raise ValueError("init_process_group: store= is not supported; give init_method='tcp://HOST:PORT' (or "
                         "MASTER_ADDR/MASTER_PORT) and distrain's rendezvous serves the store")
    seconds = DEFAULT_TIMEOUT if timeout is None else getattr(timeout, "total_seconds", lambda: timeout)()
    if _launched():
        chosen = _backend_for(backend)
        found_rank, found_size, _ = discover_ranks()
        for name, given, found in (("world_size", world_size, found_size), ("rank", rank, found_rank)):
            if given != -1 and given != found:
                raise ValueError(f"init_process_group: {name}={given}, but the launcher started this process as "
                                 f"{name} {found}")
        return init(chosen, timeout=float(seconds))
    return _init_without_launcher(backend, init_method, world_size, rank, float(seconds))


def _launched(environ=os.environ):
    """True when a launcher numbered this process: distrain's (DISTRAIN_BACKEND) or an MPI launcher."""
    return bool(environ.get("DISTRAIN_BACKEND")) or under_mpi_launcher(environ)


def _init_without_launcher(backend, init_method, world_size, rank, seconds):
    """init_process_group for ranks that find each other at rank 0's address (distrain/rendezvous.py)."""
    global _meeting
    from .. import rendezvous

    name = "gloo" if backend is None else str(backend).lower()
    if name not in ("gloo", "cpu:gloo,cuda:nccl", "ps", "local", "mpi", "nccl"):
        _backend_for(backend)  # the unknown-backend error
    if name == "local" or (world_size == 1 and init_method is None and "WORLD_SIZE" not in os.environ):
        return init("local", timeout=seconds)  # one process: nothing to meet
    plan = rendezvous.plan(init_method, rank, world_size)
    if plan.world_size == 1:
        return init("local", timeout=seconds)
    if name == "mpi":
        raise ValueError("init_process_group(backend='mpi'): MPI ranks are started by an MPI launcher: run "
                         f"mpirun -n {plan.world_size} python script.py (or use backend='gloo' to meet at "
                         f"{plan.address} without one)")
    if name == "nccl":
        raise ValueError("init_process_group(backend='nccl') without a launcher is not supported yet: start the "
                         f"ranks with python -m distrain.launch --nproc_per_node {plan.world_size} --backend nccl "
                         "script.py (or use backend='gloo')")
    _meeting = rendezvous.Meeting(plan, seconds).join()
    try:
        communicator = init("ps", timeout=seconds)
    except BaseException:
        _meeting.finish()
        _meeting = None
        raise
    # a script that never calls destroy_process_group still leaves the server (rank 0's waits for everyone)
    atexit.register(shutdown)
    return communicator


def _backend_for(backend):
    """distrain's communicator for a torch.distributed backend name (module docstring of init_process_group)."""
    started = choose_backend()
    if backend is None or str(backend).lower() in ("gloo", "cpu:gloo,cuda:nccl"):
        return started
    name = str(backend).lower()
    if name not in ("mpi", "nccl", "ps", "local"):
        raise ValueError(f"init_process_group: unknown backend {backend!r}; use \"gloo\" (the job's own), \"mpi\", "
                         "\"nccl\", \"ps\" or \"local\"")
    if started not in ("local", name) and os.environ.get("DISTRAIN_BACKEND"):
        raise ValueError(f"init_process_group: backend {backend!r}, but the launcher started this job with "
                         f"--backend {started}; use that one (or \"gloo\", which means it)")
    return name


def destroy_process_group(group=None):
    """Leave the process group (torch.distributed's name for shutdown), or release only `group` (new_group)."""
    from . import groups

    if group is not None:
        return groups.destroy(group)
    groups.destroy_all()
    shutdown()


def is_available() -> bool:
    return True


def get_backend(group=None) -> str:
    """The communicator's name: "mpi", "ps", "nccl" or "local" (what "gloo" became, see init_process_group)."""
    return get_communicator().name


def is_initialized() -> bool:
    return _communicator is not None


def get_communicator():
    if _communicator is None:
        raise RuntimeError("distrain.distributed is not initialised: call distrain.distributed.init() or "
                           "init_process_group() first")
    return _communicator


def get_rank(group=None) -> int:
    """This rank's number in the job, or in `group` (-1 on a rank not in it, as torch)."""
    if group is not None:
        from .groups import rank_in

        return rank_in(group)
    return get_communicator().rank


def get_world_size(group=None) -> int:
    """The job's number of ranks, or `group`'s (-1 on a rank not in it, as torch)."""
    if group is not None:
        from .groups import size_of

        return size_of(group)
    return get_communicator().size


def shutdown():
    """Leave the process group (idempotent)."""
    global _communicator, _meeting
    if _communicator is not None:
        from .. import timeline
        from ..comm import liveness

        try:
            timeline.finish_from_environment()  # rank 0 merges every rank's part (waiting for them, with a timeout)
        finally:
            try:
                liveness.detach(_communicator.liveness)
                _communicator.close()
            finally:
                _communicator = None
                if _meeting is not None:  # rank 0: the others leave its server before it stops
                    _meeting.finish()
                    _meeting = None
