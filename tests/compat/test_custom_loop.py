"""A loop without DDP (hand-partitioned data, broadcast initial weights, gradients averaged with all_reduce, metrics
through all_reduce SUM/MAX/AVG and all_gather) gives PyTorch's numbers with only its imports changed."""
import sys

import pytest

from tests.compat.twins import (assert_same_numbers, distrain_launch, distrain_twin, free_port, numbers, program, run,
                                torchrun)

PROGRAM = "allreduce_custom_loop.py"
EPOCHS = 3
PRINTED = (("LOSS", 3), ("EPOCH", 1), ("WORST", 1), ("AVG", 1), ("GATHERED", 2))


@pytest.fixture(scope="module")
def pytorch_output():
    cache = {}

    def output(ranks):
        if ranks not in cache:
            cache[ranks] = run(torchrun(ranks, program(PROGRAM), EPOCHS, port=free_port()), oracle=True)
        return cache[ranks]

    return output


def assert_like_pytorch(ours, theirs, ranks):
    for tag, fields in PRINTED:
        assert_same_numbers(numbers(ours, tag, fields), numbers(theirs, tag, fields), tag)
    assert len(numbers(ours, "GATHERED", 2)) == EPOCHS * ranks


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
@pytest.mark.parametrize("ranks", [2, 3])
def test_custom_loop_matches_pytorch(pytorch_output, tmp_path, ranks, backend):
    ours = run(distrain_launch(ranks, backend, distrain_twin(PROGRAM, tmp_path), EPOCHS))
    assert_like_pytorch(ours, pytorch_output(ranks), ranks)


@pytest.mark.timeout(300)
def test_custom_loop_under_torchrun_itself(pytorch_output, tmp_path):
    ours = run(torchrun(3, distrain_twin(PROGRAM, tmp_path), EPOCHS, port=free_port()))
    assert_like_pytorch(ours, pytorch_output(3), 3)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ranks", [2, 3])
def test_mp_spawn_ddp_with_a_checkpoint_matches_pytorch(tmp_path, ranks):
    """mp.spawn starts the ranks, which meet at MASTER_ADDR:MASTER_PORT with no launcher at all."""
    name = "ddp_mp_spawn.py"
    theirs = run([sys.executable, program(name), str(ranks), str(free_port()), str(tmp_path / "torch.pt")],
                 oracle=True)
    ours = run([sys.executable, distrain_twin(name, tmp_path), str(ranks), str(free_port()),
                str(tmp_path / "distrain.pt")])
    assert_same_numbers(numbers(ours, "LOSS", 2), numbers(theirs, "LOSS", 2), "per-step losses")
    assert_same_numbers(numbers(ours, "PARAM", 1), numbers(theirs, "PARAM", 1), "final parameter sums")
    assert len(numbers(ours, "LOSS", 2)) == ranks * 6
