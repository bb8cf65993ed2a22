"""A Hogwild program (mnist_hogwild's style: model.share_memory(), mp.Process per trainer, each with its own
optimizer and DataLoader) runs on distrain with only its imports changed: taking turns, it gives PyTorch's
losses and final weights; lock-free, the shared model learns as PyTorch's does.

Before shared memory, the children trained private copies of the model (fork) or could not receive it
(spawn): the parent's final weights and loss stayed at their initial values, which these tests catch."""
import os
import sys

import pytest

from tests.compat.twins import assert_same_numbers, distrain_twin, numbers, run

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs")
PROGRAM = "hogwild_mnist.py"


def hogwild(path, processes, start_method, mode):
    return [sys.executable, path, "--num-processes", str(processes), "--start-method", start_method, "--mode", mode]


@pytest.fixture(scope="module")
def pytorch_runs():
    """PyTorch's output per (processes, start method), taking turns; each run once."""
    cache = {}

    def output(processes, start_method):
        key = (processes, start_method)
        if key not in cache:
            cache[key] = run(hogwild(os.path.join(PROGRAMS, PROGRAM), processes, start_method, "turns"))
        return cache[key]

    return output


@pytest.mark.timeout(300)
@pytest.mark.parametrize("processes, start_method", [(2, "fork"), (3, "fork"), (2, "spawn"), (3, "spawn")])
def test_taking_turns_gives_pytorchs_losses_and_weights(pytorch_runs, tmp_path, processes, start_method):
    ours = run(hogwild(distrain_twin(PROGRAM, tmp_path, PROGRAMS), processes, start_method, "turns"))
    theirs = pytorch_runs(processes, start_method)
    assert_same_numbers(numbers(ours, "LOSS", 3), numbers(theirs, "LOSS", 3), "per-step losses")
    assert_same_numbers(numbers(ours, "PARAM", 2), numbers(theirs, "PARAM", 2), "final shared weights")
    assert_same_numbers(numbers(ours, "EVAL", 1), numbers(theirs, "EVAL", 1), "loss of the shared model")
    steps = 3 * -(-240 // processes // 16)  # epochs x batches of each process's part
    assert len(numbers(ours, "LOSS", 3)) == processes * steps


@pytest.mark.timeout(300)
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_lock_free_hogwild_learns(pytorch_runs, tmp_path, start_method):
    """Racing processes lose some updates, so no exact oracle: the shared model, read in the parent, must
    have gone at least half of the way PyTorch's turn-taking run went from the initial loss."""
    theirs = numbers(pytorch_runs(3, "fork"), "EVAL", 1)
    bound = theirs[("after",)] + 0.5 * (theirs[("before",)] - theirs[("after",)])
    ours = numbers(run(hogwild(distrain_twin(PROGRAM, tmp_path, PROGRAMS), 3, start_method, "free")), "EVAL", 1)
    assert ours[("before",)] == pytest.approx(theirs[("before",)], rel=1e-5)
    assert ours[("after",)] < bound, f"lock-free Hogwild reached {ours[('after',)]}, PyTorch taking turns {theirs}"
