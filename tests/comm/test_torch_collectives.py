"""torch.distributed's collectives (distrain.distributed) on 2 and 3 ranks, mpi and ps, against NumPy."""
import os
import sys

import pytest

from tests.process_group import run_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_collectives_script.py")


@pytest.mark.timeout(200)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_every_collective_matches_numpy(backend, ranks):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = run_group([sys.executable, "-m", "distrain.launch", "-n", str(ranks), "--backend", backend, SCRIPT], 150,
                       merge_output=True, env=env)
    assert result.returncode == 0, result.stdout
    for rank in range(ranks):
        assert f"rank {rank} ok" in result.stdout, result.stdout


def test_a_collective_before_init_process_group_says_what_to_do():
    import distrain
    import distrain.distributed as dist

    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="not initialised: call distrain.distributed.init.. or init_process_group"):
        dist.all_reduce(distrain.zeros(2))


def test_init_process_group_refuses_what_it_cannot_do(monkeypatch):
    import distrain.distributed as dist

    for variable in ("DISTRAIN_BACKEND", "RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR and MASTER_PORT not set.*init_method='tcp://HOST:PORT'"):
        dist.init_process_group("gloo", world_size=2, rank=0)
    with pytest.raises(RuntimeError, match="init_method 'file:///tmp/x' is not supported: use 'env://'"):
        dist.init_process_group("gloo", init_method="file:///tmp/x", world_size=2, rank=0)
    with pytest.raises(RuntimeError, match="rank 2 is outside the world: ranks are 0..1"):
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29500", world_size=2, rank=2)
    with pytest.raises(RuntimeError, match="no rank: pass rank= or set RANK"):
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29500", world_size=2)
    with pytest.raises(ValueError, match="MPI ranks are started by an MPI launcher: run mpirun -n 2"):
        dist.init_process_group("mpi", init_method="tcp://127.0.0.1:29500", world_size=2, rank=1)
    with pytest.raises(ValueError, match="pg_options= .gloo/nccl tuning. is not supported"):
        dist.init_process_group("gloo", pg_options=object())
    with pytest.raises(ValueError, match="unknown backend 'ucc'"):
        dist.init_process_group("ucc")
    with pytest.raises(ValueError, match="rank=3, but the launcher started this process as rank 0"):
        monkeypatch.setenv("DISTRAIN_BACKEND", "local")
        dist.init_process_group("gloo", rank=3)
    monkeypatch.setenv("DISTRAIN_BACKEND", "ps")
    with pytest.raises(ValueError, match="backend 'mpi', but the launcher started this job with --backend ps"):
        dist.init_process_group("mpi")
    monkeypatch.delenv("DISTRAIN_BACKEND")
    with pytest.raises(RuntimeError, match="port 'x'; it must be a number"):
        monkeypatch.setenv("MASTER_ADDR", "localhost")
        monkeypatch.setenv("MASTER_PORT", "x")
        dist.init_process_group("gloo", world_size=2, rank=1)
    assert not dist.is_initialized()
