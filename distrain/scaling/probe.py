"""One rank of `python -m distrain.scaling --measure-link`: time allreduces of growing sizes, rank 0 prints them.

Run by the launcher (`python -m distrain.launch -n P --backend B .../probe.py [LARGEST_BYTES]`); prints one
JSON line, {"ranks": P, "backend": B, "times": {bytes: seconds}}, prefixed "scaling-probe ".
"""
import json
import sys

import distrain.distributed as dist
from distrain.scaling.measure import PROBE_SIZES, allreduce_times

comm = dist.init()
largest = int(sys.argv[1]) if len(sys.argv) > 1 else max(PROBE_SIZES)
times = allreduce_times(comm, [size for size in PROBE_SIZES if size <= largest])
if comm.rank == 0:
    print("scaling-probe " + json.dumps({"ranks": comm.size, "backend": comm.name,
                                         "times": {str(size): seconds for size, seconds in times.items()}}),
          flush=True)
dist.shutdown()
