"""Exact resume: a run killed with SIGKILL (mid-epoch, or while writing a checkpoint) and resumed writes
the uninterrupted run's losses, bit for bit, at every step; on 1 and 2 ranks (NOTE [ Exact resume ] in loop.py).

The oracle is the same configuration run without interruption. The configuration makes every
source of difference matter: BatchNorm buffers, Adam's state, a cosine schedule with warm-up,
dropout in the model (distrain's generator), a shuffled order, a loader worker process, and
checkpoints every 7 steps that fall in the middle of epochs.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.process_group import run_group

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks")
STEPS = 60

CONFIG = f"""
model = "mlp"
dataset = "synthetic"
batch_size = 8
steps = {STEPS}
workers = 1
optimizer = "adam"
lr = 0.01
warmup_steps = 5
schedule = "cosine"
checkpoint_every = 7
eval_every = 20
keep_checkpoints = 2
print_every = 10
tensorboard = false
plot = false

[model_args]
hidden = [32, 32]
dropout = 0.2

[synthetic]
shape = [1, 6, 6]
classes = 4
samples = 400
eval_samples = 64
"""


def trainer_command(ranks, config_path, run_dir, *extra):
    command = [sys.executable, "-m", "distrain.launch"]
    if ranks > 1:
        command += ["-n", str(ranks)]
    return command + ["--config", str(config_path), "--set", f"run_dir={run_dir}", *extra]


def environment(tmp_path, **extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([HOOKS, REPOSITORY]), OMP_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1", DISTRAIN_CACHE=str(tmp_path.parent / "cache"), **extra)


def run(tmp_path, ranks, run_dir, *extra, timeout=180, **env):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    result = run_group(trainer_command(ranks, config, run_dir, *extra), timeout, env=environment(tmp_path, **env))
    return result


def train_losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as file:
        lines = [json.loads(line) for line in file]
    steps = [line["step"] for line in lines if line["kind"] == "train"]
    assert steps == sorted(set(steps)), "each step is written once, in order"
    return {line["step"]: line["loss"] for line in lines if line["kind"] == "train"}, \
        {line["step"]: line["accuracy"] for line in lines if line["kind"] == "eval"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The oracle: each rank count's run without interruption."""
    found = {}
    for ranks in (1, 2):
        tmp_path = tmp_path_factory.mktemp(f"oracle{ranks}")
        result = run(tmp_path, ranks, tmp_path / "run")
        assert result.returncode == 0, result.stdout + result.stderr
        found[ranks] = train_losses(tmp_path / "run")
        assert sorted(found[ranks][0]) == list(range(1, STEPS + 1))
    return found


def kill_when(process, condition, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ranks", [1, 2])
def test_sigkill_mid_epoch_then_resume_writes_the_uninterrupted_losses_bit_for_bit(tmp_path, ranks, uninterrupted):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    run_dir = tmp_path / "run"
    process = subprocess.Popen(trainer_command(ranks, config, run_dir), env=environment(tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    second = run_dir / "checkpoints" / "step-00000014.dt"
    kill_when(process, second.exists)  # at step 14 or a little later: mid-epoch (50 or 25 steps per epoch)
    assert not (run_dir / "checkpoints" / f"step-{STEPS:08d}.dt").exists(), "the kill came after the end"

    result = run(tmp_path, ranks, run_dir, "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming from step" in result.stdout
    assert train_losses(run_dir) == uninterrupted[ranks]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ranks", [1, 2])
def test_sigkill_while_writing_a_checkpoint_then_resume_from_the_previous_one(tmp_path, ranks, uninterrupted):
    run_dir = tmp_path / "run"
    killed = run(tmp_path, ranks, run_dir, DISTRAIN_TEST_KILL_IN_CHECKPOINT="21")
    assert killed.returncode != 0
    names = sorted(os.listdir(run_dir / "checkpoints"))
    assert "step-00000014.dt" in names and "step-00000021.dt" not in names, names  # only a temporary of step 21

    result = run(tmp_path, ranks, run_dir, "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming from step 14 " in result.stdout
    assert train_losses(run_dir) == uninterrupted[ranks]
    assert not [name for name in os.listdir(run_dir / "checkpoints") if not name.endswith(".dt")], \
        "the killed writer's temporary is removed by a later save"
    assert sorted(os.listdir(run_dir / "checkpoints")) == [f"step-{56:08d}.dt", f"step-{STEPS:08d}.dt"]


@pytest.mark.timeout(300)
def test_resume_on_another_world_size_finishes_the_epoch_and_then_the_run_in_the_new_worlds_steps(tmp_path):
    """An epochs run of 2 ranks (25 batches of 8 per rank per epoch) killed writing step 21's checkpoint,
    resumed on 1 rank from step 14's: the old ranks had taken 14 * 8 * 2 = 224 of the epoch's
    400 samples, so the lone new rank takes the other 176 in 22 batches (steps 15-36), then two
    whole epochs of 50 steps; each epoch ends in an evaluation (eval_every = 0).
    """
    run_dir = tmp_path / "run"
    epochs = ["--set", "steps=0", "--set", "epochs=3", "--set", "eval_every=0"]
    killed = run(tmp_path, 2, run_dir, *epochs, DISTRAIN_TEST_KILL_IN_CHECKPOINT="21")
    assert killed.returncode != 0
    result = run(tmp_path, 1, run_dir, *epochs, "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming step 14 (epoch 0) of a run on 2 rank(s) with 1: epoch 0 goes on" in result.stdout
    with open(run_dir / "metrics.jsonl") as file:
        lines = [json.loads(line) for line in file]
    epoch_of = {line["step"]: line["epoch"] for line in lines if line["kind"] == "train"}
    assert sorted(epoch_of) == list(range(1, 137))
    assert [epoch_of[step] for step in (14, 15, 36, 37, 86, 87, 136)] == [0, 0, 0, 1, 1, 2, 2]
    assert [line["step"] for line in lines if line["kind"] == "eval"] == [36, 86, 136]
    assert sorted(os.listdir(run_dir / "checkpoints"))[-1] == f"step-{136:08d}.dt"
