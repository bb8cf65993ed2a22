"""`python -m distrain.launch`: run a training script on every rank.

Two ways to use it:

    mpirun -n 4 python -m distrain.launch train.py --epochs 3     # under an MPI launcher (or srun)
    python -m distrain.launch -n 4 train.py --epochs 3            # it starts mpiexec for you

Under a launcher, each process discovers its rank, world size and local rank from the
launcher's environment (Open MPI, MPICH/PMI, Slurm), exports them as RANK, WORLD_SIZE,
LOCAL_RANK (and DISTRAIN_RANK, ...), installs an exception hook that aborts the whole job
when this rank fails (otherwise the other ranks would wait in a collective forever), and
runs the script as `__main__` with its arguments. With `-n N` it runs the `mpiexec` that
the `mpi` extra's MPICH wheel installs, with every output line prefixed by its rank.
Without a script it runs the default job: a small data-parallel training run that prints
its loss and accuracy.

The command lines are built by pure functions (`mpiexec_command`) and executed, never
formatted into a shell string.
"""
from __future__ import annotations

import argparse
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
import traceback

ABORT_GRACE_SECONDS = 0.5

# (rank, size, local rank) variables of each launcher, most specific first
_LAUNCHER_VARIABLES = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),  # Open MPI
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),  # MPICH (hydra)
    ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),  # srun
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),  # already exported (torchrun style)
]


def discover_ranks(environ=os.environ):
    """(rank, world size, local rank) from the launcher's environment; (0, 1, 0) when there is none."""
    for rank_name, size_name, local_name in _LAUNCHER_VARIABLES:
        if rank_name in environ and size_name in environ:
            rank, size = int(environ[rank_name]), int(environ[size_name])
            local = int(environ.get(local_name, rank))
            return rank, size, local
    return 0, 1, 0


def rank_environment(rank, size, local_rank):
    """The variables a rank exports for the script (PyTorch's names and distrain's)."""
    values = {"RANK": rank, "WORLD_SIZE": size, "LOCAL_RANK": local_rank}
    return {**{k: str(v) for k, v in values.items()}, **{f"DISTRAIN_{k}": str(v) for k, v in values.items()}}


def mpiexec_command(mpiexec, count, script_argv, python=sys.executable, quiet=False):
    """The argv that starts `count` ranks of `python -m distrain.launch script_argv...` under MPICH's mpiexec."""
    command = [mpiexec, "-n", str(count)]
    if not quiet:
        command.append("-prepend-rank")  # "[r] " before every output line
    return command + [python, "-m", "distrain.launch", *script_argv]


def find_mpiexec():
    here = os.path.dirname(sys.executable)
    found = shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        raise SystemExit("distrain.launch -n: mpiexec not found; pip install 'distrain[mpi]' (the mpich wheel brings it) "
                         "or start the ranks yourself with mpirun")
    return found


def _abort_job_on_error(rank):
    """An uncaught exception on this rank prints its traceback and aborts every rank (MPI Abort)."""

    def hook(kind, value, trace):
        sys.stderr.write(f"distrain.launch: rank {rank} failed:\n" + "".join(traceback.format_exception(kind, value, trace)))
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_SECONDS)  # let the launcher forward the traceback before Abort tears the job down
        try:
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(1)
        except ImportError:
            os._exit(1)

    sys.excepthook = hook


def run_as_rank(script_argv):
    """Inside one rank: export the rank variables, guard against hangs, run the script or the default job."""
    rank, size, local_rank = discover_ranks()
    os.environ.update(rank_environment(rank, size, local_rank))
    if size > 1:
        _abort_job_on_error(rank)
        # one write per line, so a launcher's rank prefix ("[r] ") lands once per line, not per print() piece
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True, write_through=False)
    if not script_argv:
        from .default_job import main as default_job

        return default_job()
    script, *arguments = script_argv
    if not os.path.exists(script):
        raise SystemExit(f"distrain.launch: rank {rank}: no such script: {script}")
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m distrain.launch", description=__doc__.split("\n\n")[0],
                                     usage="python -m distrain.launch [-n N] [--quiet] [script.py [args ...]]")
    parser.add_argument("-n", "--nproc", type=int, help="start N ranks with mpiexec (omit under mpirun/srun)")
    parser.add_argument("--backend", default="mpi", choices=["mpi"], help="how ranks talk (default mpi)")
    parser.add_argument("--quiet", action="store_true", help="no rank prefix on output lines")
    parser.add_argument("script_argv", nargs=argparse.REMAINDER, help="the script and its arguments")
    args = parser.parse_args(argv)
    if args.nproc is None:
        return run_as_rank(args.script_argv)
    if args.nproc < 1:
        parser.error(f"-n must be at least 1, got {args.nproc}")
    command = mpiexec_command(find_mpiexec(), args.nproc, args.script_argv, quiet=args.quiet)
    process = subprocess.Popen(command, start_new_session=True)
    try:
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C: stop every rank, then leave
        os.killpg(process.pid, signal.SIGINT)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
    if code != 0:
        sys.stderr.write(f"distrain.launch: the job failed (mpiexec exit code {code}); the failing rank's "
                         "traceback is above\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
