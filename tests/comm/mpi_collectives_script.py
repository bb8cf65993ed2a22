"""Run under `mpiexec -n N`: every collective of the MPI communicator, checked against NumPy on every rank.

Prints "rank R ok" at the end; any failed check raises (and the test sees a non-zero exit).
"""
import sys

import numpy as np

import distrain.distributed as dist
from distrain.comm.base import CommunicatorError

comm = dist.init(backend="auto", timeout=20)
rank, size = comm.rank, comm.size
assert comm.name in ("mpi", "ps") and size == int(sys.argv[1]), (comm.name, size)

if sys.argv[2:] == ["timeout"]:
    # a collective only rank 0 joins must time out on rank 0, not hang; the others stay away
    import os
    import time

    if rank == 0:
        try:
            comm.allreduce_async(np.zeros(3)).wait(timeout=0.5)
            raise AssertionError("a collective without the other ranks completed")
        except CommunicatorError as error:
            assert "did not complete within 0.5 s" in str(error), error
    print(f"rank {rank} ok", flush=True)
    if rank != 0:
        time.sleep(3.0)  # MPI stops us when rank 0 leaves
    os._exit(0)  # rank 0's allreduce is still pending: MPI cannot be finalised cleanly
assert 0 <= comm.local_rank < comm.local_size <= size

# every rank holds rank-dependent data; the expected results are computed locally from all ranks' data
def data(r, dtype=np.float64):
    return (np.arange(12, dtype=np.float64).reshape(3, 4) * (r + 1) - r).astype(dtype)

everyone = [data(r) for r in range(size)]
for op, expected in (("sum", np.sum(everyone, axis=0)), ("mean", np.mean(everyone, axis=0)),
                     ("max", np.max(everyone, axis=0)), ("min", np.min(everyone, axis=0))):
    mine = data(rank)
    assert comm.allreduce(mine, op) is mine
    np.testing.assert_allclose(mine, expected, err_msg=op)

# integer sums are exact; float32 in place
ints = np.full(5, rank + 1, dtype=np.int64)
comm.allreduce(ints)
assert ints.tolist() == [size * (size + 1) // 2] * 5

# non-blocking: several in flight at once, completed in any order
arrays = [np.full(1000, rank + i, dtype=np.float32) for i in range(3)]
handles = [comm.allreduce_async(a, "sum") for a in arrays]
for i in reversed(range(3)):
    handles[i].wait()
    assert handles[i].is_completed()
    np.testing.assert_array_equal(arrays[i], sum(r + i for r in range(size)))

# a view of a bigger buffer (what the reducer does with flat gradient buckets)
flat = np.arange(20, dtype=np.float64) + rank
comm.allreduce(flat[5:15], "sum")
np.testing.assert_array_equal(flat[5:15], sum(np.arange(5, 15, dtype=np.float64) + r for r in range(size)))
np.testing.assert_array_equal(flat[:5], np.arange(5) + rank)

# broadcast from each root
for root in range(size):
    value = np.full(7, float(rank))
    comm.broadcast(value, root)
    np.testing.assert_array_equal(value, float(root))

gathered = comm.allgather(np.array([rank, rank * 10]))
assert gathered.tolist() == [[r, r * 10] for r in range(size)]
assert comm.allgather_object({"rank": rank, "name": "r" * rank}) == [{"rank": r, "name": "r" * r} for r in range(size)]
comm.barrier()

# bad input is refused with a clear error, identically on every rank (no collective is started)
try:
    comm.allreduce(np.zeros((4, 4))[:, 1], "sum")
    raise AssertionError("a non-contiguous array was accepted")
except ValueError as error:
    assert "C-contiguous" in str(error)

dist.shutdown()
print(f"rank {rank} ok", flush=True)
