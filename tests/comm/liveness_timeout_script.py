"""Three ranks; rank 0's collective times out (init(timeout=3)) because the others are elsewhere.

argv[1] says where:
- outside: ranks 0 and 1 wait in a barrier, rank 2 sleeps outside any collective;
- elsewhere: rank 0 starts an allreduce without waiting for it, then waits in a barrier;
  rank 1 sleeps outside any collective; rank 2 waits in that allreduce, which rank 1 never
  joins. Every rank makes the same calls in the same order, so MPI matches them correctly.

The other ranks' timeout is 30 s, so rank 0's error (which must name who did not arrive
and what each is doing) is the first and ends the job. Every rank prints "ready RANK PID"
and "about RANK HOST" once all are up.
"""
import os
import socket
import sys
import time

import numpy as np

import distrain.distributed as dist

where = sys.argv[1]
rank = int(os.environ["RANK"])  # distrain.launch sets it before the script runs
comm = dist.init(timeout=3 if rank == 0 else 30)
comm.barrier()
print("ready", rank, os.getpid(), flush=True)
print("about", rank, socket.gethostname(), flush=True)
values = np.ones(4)
if where == "outside":
    if rank == 2:
        time.sleep(30)
    else:
        comm.barrier()
elif where == "elsewhere":
    if rank == 0:
        started = comm.allreduce_async(values)
        comm.barrier()
    elif rank == 1:
        time.sleep(30)
    else:
        comm.allreduce(values)
raise AssertionError(f"rank {rank}: a collective completed without every rank")
