"""Run under `mpiexec -n N`: the collective timeout the MPI communicator uses, by default and when given.

argv: N, then
  "default SECONDS": init() and create_communicator("mpi") without a timeout both wait SECONDS (what
      README states; the test reads it there);
  "given SECONDS FLAG": after init(timeout=SECONDS) the communicator's timeout is SECONDS, and an
      allreduce that rank 1 never joins fails on rank 0 with a CommunicatorError after SECONDS (not before,
      and long before the default), with no timeout passed to the collective itself; rank 0 then creates
      the file FLAG, which tells the others to leave.
Prints "rank R ok" (in "given" mode only rank 0 has something to check).
"""
import os
import sys
import time

import numpy as np

import distrain.distributed as dist
from distrain.comm.base import CommunicatorError, create_communicator

mode, seconds = sys.argv[2], float(sys.argv[3])

if mode == "default":
    comm = dist.init()
    assert comm.name == "mpi" and comm.timeout == seconds, (comm.name, comm.timeout, seconds)
    direct = create_communicator("mpi")
    assert direct.timeout == seconds, (direct.timeout, seconds)
    direct.close()
    dist.shutdown()
    print(f"rank {comm.rank} ok", flush=True)
    sys.exit(0)

flag = sys.argv[4]
comm = dist.init(timeout=seconds)
assert comm.timeout == seconds, (comm.timeout, seconds)
if comm.rank == 0:
    start = time.monotonic()
    try:
        comm.allreduce(np.zeros(3))
        raise AssertionError("an allreduce without the other ranks completed")
    except CommunicatorError:
        elapsed = time.monotonic() - start
    with open(flag, "w"):
        pass
    assert seconds * 0.99 <= elapsed < seconds + 30, f"init(timeout={seconds}) gave up after {elapsed:.2f} s"
    print(f"rank 0 ok (gave up after {elapsed:.2f} s)", flush=True)
else:
    deadline = time.monotonic() + seconds + 60
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
os._exit(0)  # rank 0's allreduce is still pending: MPI cannot be finalised cleanly
