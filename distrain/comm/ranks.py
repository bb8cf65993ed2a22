"""Which rank this process is: read from the environment its launcher set.

One table for every launcher distrain knows (Open MPI, MPICH/hydra, PMIx, Slurm's srun,
and RANK/WORLD_SIZE as distrain's own launcher and torchrun export them), used by the
launcher, by `distributed.init("auto")` and by the communicators that do not get their
rank from MPI itself (ps, and nccl outside MPI).
"""
from __future__ import annotations

import os

# (rank, size, local rank) variables of each launcher, most specific first
_LAUNCHER_VARIABLES = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),  # Open MPI
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),  # MPICH (hydra)
    ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),  # srun
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),  # already exported (distrain.launch, torchrun)
]

# how many ranks share this machine, per launcher (Slurm's only when --ntasks-per-node was given)
_LOCAL_SIZE_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE",
                         "LOCAL_WORLD_SIZE")

# variables only an MPI launcher (mpirun/mpiexec of Open MPI or MPICH, srun with PMI) sets
_MPI_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")

# what a launcher started *inside* another launcher's process must not pass on to its own ranks: the outer
# launcher's numbering (they would read their rank from it, the table above trying it before RANK) and its MPI
# variables (they would think they run under MPI); the families, since PMI and Open MPI set many more
OUTER_LAUNCHER_PREFIXES = ("OMPI_COMM_WORLD_", "PMI_", "PMIX_", "HYDI_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
                           "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")


def launched_ranks(environ=os.environ):
    """(rank, world size, local rank) from the launcher's environment; None when no launcher set them."""
    for rank_name, size_name, local_name in _LAUNCHER_VARIABLES:
        if rank_name in environ and size_name in environ:
            rank, size = int(environ[rank_name]), int(environ[size_name])
            return rank, size, int(environ.get(local_name, rank))
    return None


def discover_ranks(environ=os.environ):
    """(rank, world size, local rank) from the launcher's environment; (0, 1, 0) when there is none."""
    return launched_ranks(environ) or (0, 1, 0)


def discover_local_size(environ=os.environ):
    """The number of ranks on this machine, when the launcher says; else None."""
    for name in _LOCAL_SIZE_VARIABLES:
        if environ.get(name, "").isdigit():
            return int(environ[name])
    return None


def under_mpi_launcher(environ=os.environ):
    """True when an MPI launcher started this process."""
    return any(name in environ for name in _MPI_VARIABLES)
