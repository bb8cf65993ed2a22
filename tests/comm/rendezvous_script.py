"""One rank of a launcher-less job: `python rendezvous_script.py RANK WORLD PORT [destroy|atexit [TIMEOUT]]`.

Meets the others at tcp://127.0.0.1:PORT (distrain/rendezvous.py), checks an all_reduce and an
all_gather against NumPy, and prints what the environment says before and after leaving.
"""
import os
import sys

import numpy

import distrain.distributed as dist

rank, world, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ending = sys.argv[4] if len(sys.argv) > 4 else "destroy"
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timeout)
assert (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (rank, world, "ps")
values = numpy.arange(5, dtype=numpy.float32) * (rank + 1)
dist.all_reduce(values)
numpy.testing.assert_array_equal(values, numpy.arange(5, dtype=numpy.float32) * sum(range(1, world + 1)))
gathered = [numpy.zeros(2, dtype=numpy.int64) for _ in range(world)]
dist.all_gather(gathered, numpy.array([rank, rank * rank], dtype=numpy.int64))
assert [g.tolist() for g in gathered] == [[r, r * r] for r in range(world)], gathered
print(f"rank {rank} ok, backend in the environment: {os.environ.get('DISTRAIN_BACKEND')}", flush=True)
if ending == "destroy":
    dist.destroy_process_group()
    print(f"rank {rank} left, backend in the environment: {os.environ.get('DISTRAIN_BACKEND')}", flush=True)
