"""The communicator interface: what data-parallel training needs from "the other ranks".

Communicators know arrays (numpy or cupy), not Tensors or Modules (shared/DESIGN.md): the
reducer (parallel.py) is where the two meet. Every collective works in place on one
array; the non-blocking form returns a `Handle` to wait on, so a reducer can start an
allreduce as soon as a gradient bucket is ready and keep computing.

Which backend when (`create_communicator(name)`):

  =======  ==========================================  =====================================
  name     use it for                                  needs
  =======  ==========================================  =====================================
  local    one process (every call a no-op)            nothing
  mpi      CPU training on one or many machines under  mpi4py and an MPI (`pip install
           mpirun/srun; GPUs without NCCL (staged      'distrain[mpi]'` brings MPICH and
           through host memory)                        mpiexec)
  nccl     one GPU per rank, on one or many machines   cupy with NCCL (`distrain[gpu]`), and
           (the fastest for GPUs)                      MPI or the launcher's rendezvous
  ps       machines without MPI; elastic clusters      nothing beyond the core (pyzmq): a
           where a central server is simpler than      parameter server that the launcher
           MPI; no MPI on the machines                 starts, or `python -m
                                                       distrain.comm.ps.server`
  =======  ==========================================  =====================================
"""
from __future__ import annotations

import importlib

from ..errors import DistrainError

REDUCE_OPS = ("sum", "mean", "max", "min")


class CommunicatorError(DistrainError, RuntimeError):
    """A collective failed or timed out; the message names the ranks involved when known."""


class Handle:
    """A non-blocking collective in flight: `wait()` finishes it, `is_completed()` asks without blocking."""

    def wait(self):
        raise NotImplementedError

    def is_completed(self) -> bool:
        raise NotImplementedError


class DoneHandle(Handle):
    """A collective that finished when it was started (local, or a blocking fallback)."""

    def wait(self):
        return None

    def is_completed(self):
        return True


class Communicator:
    """One process's view of a group of `size` processes numbered 0..size-1 (`rank`).

    `local_rank`/`local_size` number the processes on this machine (to pick a GPU).
    Reductions: "sum", "mean", "max", "min", in place on `array`.
    """

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    name = "base"

    def allreduce(self, array, op="sum"):
        """Combine `array` across ranks, in place; every rank ends with the result."""
        self.allreduce_async(array, op).wait()
        return array

    def allreduce_async(self, array, op="sum") -> Handle:
        raise NotImplementedError

    def broadcast(self, array, root=0):
        """Overwrite `array` on every rank with root's, in place."""
        raise NotImplementedError

    def allgather(self, array):
        """Every rank's `array` (same shape and dtype everywhere), stacked along a new first axis."""
        raise NotImplementedError

    def allgather_object(self, value):
        """Every rank's small picklable `value`, as a list indexed by rank."""
        raise NotImplementedError

    def barrier(self):
        """Return once every rank has called barrier()."""
        raise NotImplementedError

    def close(self):
        """Release the communicator's resources (idempotent)."""

    def __repr__(self):
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


def check_op(op):
    if op not in REDUCE_OPS:
        raise ValueError(f"reduction op must be one of {REDUCE_OPS}, got {op!r}")
    return op


_BACKENDS = {"local": ("distrain.comm.local", "LocalCommunicator", None),
             "mpi": ("distrain.comm.mpi", "MPICommunicator", "pip install 'distrain[mpi]' (mpi4py and MPICH)"),
             "nccl": ("distrain.comm.nccl", "NCCLCommunicator", "pip install 'distrain[gpu]' (CuPy with NCCL)"),
             "ps": ("distrain.comm.ps.client", "PSCommunicator", None)}


def create_communicator(name, **options):
    """The communicator called `name` (see the table in this module's docstring)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown communicator backend {name!r}; one of {sorted(_BACKENDS)}")
    module_name, class_name, install = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"the {name!r} communicator needs {error.name}: {install}") from error
    return getattr(module, class_name)(**options)
