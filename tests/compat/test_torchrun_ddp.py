"""A torchrun-style DDP script with snapshot resume runs on distrain with only its imports changed, giving
PyTorch's losses: under distrain's launcher (mpi and ps), under torchrun itself (distrain's launcher-less
rendezvous from torchrun's environment), and interrupted then resumed from its snapshot."""
import pytest

from tests.compat.twins import (assert_same_numbers, distrain_launch, distrain_twin, free_port, numbers, program, run,
                                torchrun)

PROGRAM = "ddp_snapshot_torchrun.py"
EPOCHS, SAVE_EVERY = 4, 2


@pytest.fixture(scope="module")
def pytorch_runs(tmp_path_factory):
    """PyTorch's output per world size, each run once by torchrun with gloo (uninterrupted)."""
    cache = {}

    def output(ranks):
        if ranks not in cache:
            snapshot = tmp_path_factory.mktemp("torch") / "snapshot.pt"
            cache[ranks] = run(torchrun(ranks, program(PROGRAM), EPOCHS, SAVE_EVERY, snapshot, port=free_port()),
                               oracle=True)
        return cache[ranks]

    return output


def assert_like_pytorch(ours, theirs):
    assert_same_numbers(numbers(ours, "LOSS", 3), numbers(theirs, "LOSS", 3), "per-step losses")
    assert_same_numbers(numbers(ours, "MEAN", 1), numbers(theirs, "MEAN", 1), "all-reduced epoch means")


@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
@pytest.mark.parametrize("ranks", [2, 3])
def test_under_distrain_launcher_with_torchrun_flags(pytorch_runs, tmp_path, ranks, backend):
    twin = distrain_twin(PROGRAM, tmp_path)
    ours = run(distrain_launch(ranks, backend, twin, EPOCHS, SAVE_EVERY, tmp_path / "snapshot.pt"))
    assert_like_pytorch(ours, pytorch_runs(ranks))
    assert len(numbers(ours, "LOSS", 3)) == ranks * EPOCHS * (240 // ranks // 16 + (240 // ranks % 16 > 0))


@pytest.mark.timeout(400)
@pytest.mark.parametrize("ranks", [2, 3])
def test_under_torchrun_itself(pytorch_runs, tmp_path, ranks):
    """No distrain launcher: the ranks meet at torchrun's MASTER_ADDR:MASTER_PORT (distrain/rendezvous.py)."""
    twin = distrain_twin(PROGRAM, tmp_path)
    ours = run(torchrun(ranks, twin, EPOCHS, SAVE_EVERY, tmp_path / "snapshot.pt", port=free_port()))
    assert_like_pytorch(ours, pytorch_runs(ranks))


@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
def test_interrupted_and_resumed_from_the_snapshot(pytorch_runs, tmp_path, backend):
    """Stopped after 2 epochs and started again: the resumed epochs are the uninterrupted run's (momentum too)."""
    twin = distrain_twin(PROGRAM, tmp_path)
    snapshot = tmp_path / "snapshot.pt"
    first = run(distrain_launch(2, backend, twin, SAVE_EVERY, SAVE_EVERY, snapshot))
    second = run(distrain_launch(2, backend, twin, EPOCHS, SAVE_EVERY, snapshot))
    assert "resuming from the snapshot at epoch 2" in second
    assert not set(numbers(first, "LOSS", 3)) & set(numbers(second, "LOSS", 3))
    assert_like_pytorch(first + second, pytorch_runs(2))
