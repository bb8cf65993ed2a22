"""The MPI communicator, run for real: `mpiexec -n N` (from the mpich wheel) on this machine.

Every run has a timeout that kills the whole process group, so a hang fails the test
instead of stalling CI.
"""
import os
import re
import shutil
import sys

import pytest

from tests.process_group import run_group

SCRIPT = os.path.join(os.path.dirname(__file__), "mpi_collectives_script.py")
DDP_SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_script.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mpiexec():
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert found, "mpiexec not found: pip install 'distrain[mpi]' (the mpich wheel brings it)"
    return found


def assert_every_rank_ok(output, ranks):
    """Every one of the ranks 0..ranks-1 printed its "rank R ok" line (the scripts' verdict)."""
    assert sorted(int(r) for r in re.findall(r"rank (\d+) ok", output)) == list(range(ranks)), output


def run_ranks(count, *args, timeout=90, script=SCRIPT):
    command = [mpiexec(), "-n", str(count), sys.executable, script, str(count), *args]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    result = run_group(command, timeout, merge_output=True, env=env)
    return result.returncode, result.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3])
def test_every_collective_matches_numpy_on_every_rank(ranks):
    code, output = run_ranks(ranks)
    assert code == 0, output
    # ranks share the pipe, so their lines may interleave: find each rank's report anywhere
    assert_every_rank_ok(output, ranks)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_ddp_on_n_ranks_equals_one_process_on_the_whole_batch(ranks):
    """Also: rank 0's weights are broadcast, unused parameters do not hang, no_sync, mismatched models, and the
    Horovod-style broadcast_parameters + DistributedOptimizer give the same training."""
    code, output = run_ranks(ranks, script=DDP_SCRIPT, timeout=150)
    assert code == 0, output
    assert_every_rank_ok(output, ranks)


@pytest.mark.timeout(120)
def test_a_collective_a_rank_never_joins_times_out_instead_of_hanging():
    _, output = run_ranks(2, "timeout")  # the exit code is MPI's verdict on ranks left mid-collective
    assert "rank 0 ok" in output, output


def test_local_world_needs_no_mpi():
    import numpy as np

    import distrain.distributed as dist

    communicator = dist.init(backend="local")
    try:
        assert (dist.get_rank(), dist.get_world_size(), dist.is_initialized()) == (0, 1, True)
        array = np.arange(4.0)
        assert communicator.allreduce(array, "mean") is array and array.tolist() == [0.0, 1.0, 2.0, 3.0]
        assert communicator.allreduce_async(array).is_completed()
        assert communicator.allgather(array).shape == (1, 4)
        assert communicator.allgather_object("x") == ["x"]
        with pytest.raises(ValueError, match="one of"):
            communicator.allreduce(array, "product")
        with pytest.raises(RuntimeError, match="already initialised"):
            dist.init(backend="local")
    finally:
        dist.shutdown()
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="unknown communicator backend"):
        dist.init(backend="carrier-pigeon")
