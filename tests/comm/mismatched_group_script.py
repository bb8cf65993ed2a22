"""Three ranks disagree on a group: ranks 0 and 2 ask for [0, 1, 2], rank 1 for [0, 1].

Every rank must get the error, rank 2 too (it agrees with the leader, rank 0): before the
leader's verdict, rank 2 went on into MPI's group creation, which has no timeout, and hung.
"""
import time

import distrain.distributed as dist

comm = dist.init(timeout=5)
began = time.monotonic()
try:
    comm.split([0, 1] if comm.rank == 1 else [0, 1, 2])
    print(f"rank {comm.rank} made the group", flush=True)
except ValueError as error:
    print(f"rank {comm.rank} refused after {time.monotonic() - began:.1f} s: {error}", flush=True)
comm.barrier()
dist.shutdown()
