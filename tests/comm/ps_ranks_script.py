"""One rank of a parameter-server job, run as its own process by tests/comm/test_ps.py.

The server's address, this rank and the world size come from the launcher's variables
($DISTRAIN_PS_ADDRESS, RANK, WORLD_SIZE, and $DISTRAIN_PS_SECRET when the server has one).
Every rank can compute every other rank's data (seeded by rank), so each checks its
results against NumPy locally. Prints "rank R ok" at the end; a failed check raises, and
the test sees a non-zero exit.

    python ps_ranks_script.py            # every collective, checked
    python ps_ranks_script.py abandon    # the last rank leaves without joining collective #0
"""
import functools
import os
import sys
import time

import numpy as np

from distrain.comm.base import CommunicatorError, create_communicator


def data(rank, dtype, shape, salt=0):
    rng = np.random.default_rng((salt, rank))
    if np.dtype(dtype).kind in "iu":
        return np.asarray(rng.integers(-1000, 1000, size=shape)).astype(dtype)
    return np.asarray(rng.standard_normal(shape) * 10).astype(dtype)  # an array even for shape ()


def reduce_in_rank_order(parts, op):
    if op in ("max", "min"):
        return functools.reduce(np.maximum if op == "max" else np.minimum, parts)
    wide = np.float32 if parts[0].dtype == np.float16 else parts[0].dtype
    total = parts[0].astype(wide)
    for part in parts[1:]:
        total = np.add(total, part.astype(wide))
    return total.astype(parts[0].dtype)


def check_collectives(comm):
    rank, size = comm.rank, comm.size
    for dtype in ("float16", "float32", "float64", "int32", "int64"):
        for shape in ((), (0,), (5,), (3, 4)):
            for op in ("sum", "max", "min"):
                everyone = [data(r, dtype, shape) for r in range(size)]
                mine = everyone[rank].copy()
                assert comm.allreduce(mine, op) is mine
                expected = reduce_in_rank_order(everyone, op)
                assert mine.dtype == np.dtype(dtype) and mine.shape == shape
                assert np.array_equal(mine, expected), (dtype, shape, op, mine, expected)
            if dtype.startswith("float"):
                mine = data(rank, dtype, shape).copy()
                comm.allreduce(mine, "mean")
                expected = np.mean([data(r, "float64", shape) for r in range(size)], axis=0)
                tolerance = 2e-2 if dtype == "float16" else 1e-5
                np.testing.assert_allclose(mine.astype(np.float64), expected, rtol=tolerance, atol=tolerance)

    # determinism: ranks arrive last-to-first, the sum is still rank 0 + rank 1 + ... bit for bit
    rng = np.random.default_rng(99)
    everyone = [(rng.standard_normal(4000) * 10.0 ** rng.uniform(-4, 8, 4000)).astype(np.float32)
                for _ in range(size)]
    mine = everyone[rank].copy()
    time.sleep(0.1 * (size - 1 - rank))
    comm.allreduce(mine)
    expected = reduce_in_rank_order(everyone, "sum")
    assert np.array_equal(mine.view(np.uint32), expected.view(np.uint32)), "sum not in rank order"

    # several non-blocking allreduces in flight, waited in the reverse order
    arrays = [data(rank, "float32", (100,), salt=s) for s in range(1, 6)]
    handles = [comm.allreduce_async(array) for array in arrays]
    for handle in reversed(handles):
        handle.wait()
    for salt, array in enumerate(arrays, start=1):
        assert np.array_equal(array, reduce_in_rank_order([data(r, "float32", (100,), salt) for r in range(size)],
                                                          "sum"))

    for root in range(size):
        mine = data(rank, "int64", (2, 3), salt=root)
        assert comm.broadcast(mine, root=root) is mine
        assert np.array_equal(mine, data(root, "int64", (2, 3), salt=root))

    gathered = comm.allgather(data(rank, "float64", (2, 2)))
    assert np.array_equal(gathered, np.stack([data(r, "float64", (2, 2)) for r in range(size)]))
    assert comm.allgather_object({"rank": rank, "items": list(range(rank * 50))}) == [
        {"rank": r, "items": list(range(r * 50))} for r in range(size)]

    if rank == 0:
        comm.connection.store_set("job-id", b"\x00job\xff")
    assert comm.connection.store_get("job-id") == b"\x00job\xff"
    comm.barrier()


def abandon(comm):
    """The last rank leaves at once; the others must be told it never joined collective #0."""
    if comm.rank == comm.size - 1:
        os._exit(0)  # a crash: no bye, no collective
    try:
        comm.allreduce(np.ones(3))
    except CommunicatorError as error:
        assert f"rank(s) [{comm.size - 1}] never joined" in str(error), error
    else:
        raise AssertionError("a collective the last rank never joined completed")


def main():
    comm = create_communicator("ps", timeout=float(os.environ.get("PS_TEST_TIMEOUT", "30")))
    try:
        assert comm.size == int(os.environ["WORLD_SIZE"]) and comm.rank == int(os.environ["RANK"])
        abandon(comm) if sys.argv[1:] == ["abandon"] else check_collectives(comm)
    finally:
        comm.close()
    print(f"rank {comm.rank} ok", flush=True)


if __name__ == "__main__":
    main()
