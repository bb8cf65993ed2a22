"""Run under `mpiexec -n N` with $DISTRAIN_MPI_PROGRESS set by the test (NOTE [ MPI progress ] in parallel.py).

argv: N, then what this run expects: "thread" (the MPI communicator runs its progress thread,
"distrain-mpi-progress", until shutdown), "none" (it runs none) or "refused" (init must refuse the value,
naming the variable). With a communicator, runs collectives in flight together (checked against NumPy)
and a few DDP steps with several buckets, then prints "rank R ok" and, on rank 0, "digest D": a hash of
the trained weights, which the test compares between the settings (progress changes when MPI works, not
what it computes).
"""
import hashlib
import os
import sys
import threading

import numpy as np

import distrain
import distrain.distributed as dist
import distrain.nn as nn
from distrain.parallel import DistributedDataParallel

PROGRESS_THREAD = "distrain-mpi-progress"
expect = sys.argv[2]


def progress_threads():
    return [thread for thread in threading.enumerate() if thread.name == PROGRESS_THREAD and thread.is_alive()]


if expect == "refused":
    try:
        dist.init(backend="mpi", timeout=30)
        raise AssertionError(f"DISTRAIN_MPI_PROGRESS={os.environ.get('DISTRAIN_MPI_PROGRESS')!r} was accepted")
    except (ValueError, distrain.DistrainError) as error:
        assert "DISTRAIN_MPI_PROGRESS" in str(error) and os.environ["DISTRAIN_MPI_PROGRESS"] in str(error), error
    assert not progress_threads()
    print("rank 0 ok", flush=True)
    sys.exit(0)

comm = dist.init(backend="mpi", timeout=30)
rank, size = comm.rank, comm.size

# several allreduces in flight at once, finished in reverse order
arrays = [np.full(1000, rank + i, dtype=np.float64) for i in range(3)]
handles = [comm.allreduce_async(array, "sum") for array in arrays]
running = len(progress_threads())
for handle in reversed(handles):
    handle.wait()
assert running == (1 if expect == "thread" else 0), f"rank {rank}: {running} progress threads, expected {expect}"
for i, array in enumerate(arrays):
    np.testing.assert_array_equal(array, sum(r + i for r in range(size)))

distrain.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double(),
                                bucket_cap_mb=0.0005)
assert len(model._buckets) > 1
optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
rng = np.random.default_rng(rank)
for _ in range(3):
    optimizer.zero_grad()
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    nn.functional.cross_entropy(model(distrain.tensor(x)), distrain.tensor(y)).backward()
    optimizer.step()
assert len(progress_threads()) == running, f"rank {rank}: the progress threads changed during training"
weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
assert (comm.allgather(np.frombuffer(weights, dtype=np.uint8)) == np.frombuffer(weights, dtype=np.uint8)).all()

dist.shutdown()
assert not progress_threads(), f"rank {rank}: the progress thread outlived shutdown()"
if rank == 0:
    print(f"digest {hashlib.sha256(weights).hexdigest()}", flush=True)
print(f"rank {rank} ok", flush=True)
