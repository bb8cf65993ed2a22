"""A job in which one rank (argv[2]) ends early, in the way argv[1] names, while the others wait in a barrier for it.

Run by tests/launch/test_failures.py under `python -m distrain.launch -n 3` (mpi and ps)
and under a plain `mpiexec -n 3 python -m distrain.launch`. Every rank prints, once all
are up, what the test needs to check the launcher's verdict and the cleanup:

    ready RANK PID                  (the rank's own pid: the one the verdict must name)
    about RANK HOST PARENT_PID SHM  (its host, its parent (the supervisor under MPI), the /dev/shm files it maps)

and the rank that ends prints "ending TIME" (time.time()) just before it ends. Rank 0 is
the one that hosts the liveness hub, so its ending is a case of its own.
"""
import os
import signal
import socket
import sys
import time

import distrain.distributed as dist


def mapped_shared_memory():
    """The /dev/shm files this process maps (MPICH's segment, for one): what a killed rank could leave behind."""
    paths = set()
    with open(f"/proc/{os.getpid()}/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/dev/shm/") and not fields[5].rstrip().endswith("(deleted)"):
                paths.add(fields[5].rstrip())
    return sorted(paths)


def raise_an_exception():
    raise ValueError("rank one cannot go on")


ENDINGS = {
    "raise": raise_an_exception,
    "exit2": lambda: sys.exit(2),
    "exit0": lambda: sys.exit(0),
    "osexit3": lambda: os._exit(3),
    "sigkill": lambda: os.kill(os.getpid(), signal.SIGKILL),
    "sigterm": lambda: os.kill(os.getpid(), signal.SIGTERM),
}

how, ender = sys.argv[1], int(sys.argv[2])
comm = dist.init(timeout=60)  # far beyond the test's 10 s: only the liveness side channel can end the wait in time
comm.barrier()  # every rank is up
print("ready", comm.rank, os.getpid(), flush=True)
print("about", comm.rank, socket.gethostname(), os.getppid(), *mapped_shared_memory(), flush=True)
if comm.rank != ender:
    comm.barrier()  # waits for the rank that ends, which never comes
    raise AssertionError(f"the barrier completed without rank {ender}")
time.sleep(0.5)  # let the others get into the barrier
print("ending", repr(time.time()), flush=True)
ENDINGS[how]()
time.sleep(60)  # a signal is delivered asynchronously: never fall through to the script's normal end
