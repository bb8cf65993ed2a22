"""The trainer's options against closed forms: gradient accumulation, clipping, early stopping, warm-up and schedules."""
import io
import json
import math

import numpy
import pytest

import distrain.distributed as dist
from tests.conftest import CUDA_AVAILABLE, CUDA_SKIP_REASON
from distrain.train import Trainer, load_config
from distrain.train.optimization import LearningRateFactor

SMALL = ["model=mlp", "model_args.hidden=[16]", "dataset=synthetic", "synthetic.shape=[1, 4, 4]", "synthetic.classes=3",
         "synthetic.samples=96", "synthetic.eval_samples=24", "tensorboard=false", "plot=false", "print_every=1000"]


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTRAIN_CACHE", str(tmp_path / "cache"))
    comm = dist.init("local")
    yield comm
    dist.shutdown()


def trained(tmp_path, comm, *assignments, name="run"):
    config = load_config(assignments=[*SMALL, f"run_dir={tmp_path / name}", *assignments])
    trainer = Trainer(config, 0, 1, out=io.StringIO()).prepare()
    before = [parameter.detach().numpy().copy() for parameter in trainer.model.parameters()]
    results = trainer.run(comm)
    with open(tmp_path / name / "metrics.jsonl") as file:
        lines = [json.loads(line) for line in file]
    return trainer, before, results, lines


def test_accumulating_two_half_batches_is_one_whole_batch(tmp_path, local):
    _, _, _, whole = trained(tmp_path, local, "batch_size=16", "steps=8", "optimizer=sgd", "lr=0.5", name="whole")
    _, _, _, halves = trained(tmp_path, local, "batch_size=8", "accumulate=2", "steps=8", "optimizer=sgd", "lr=0.5",
                              "lr_scaling=none", name="halves")
    whole_losses = [line["loss"] for line in whole if line["kind"] == "train"]
    half_losses = [line["loss"] for line in halves if line["kind"] == "train"]
    assert len(whole_losses) == len(half_losses) == 8
    numpy.testing.assert_allclose(half_losses, whole_losses, rtol=1e-5)
    assert half_losses[-1] < half_losses[0]  # and the steps did train: not a comparison of two no-ops


def test_clipping_bounds_one_sgd_step_by_lr_times_the_norm(tmp_path, local):
    trainer, before, _, _ = trained(tmp_path, local, "steps=1", "optimizer=sgd", "momentum=0", "lr=0.1",
                                    "clip_grad_norm=0.001", "schedule=constant")
    after = [parameter.detach().numpy() for parameter in trainer.model.parameters()]
    moved = math.sqrt(sum(float(((a - b).astype(numpy.float64) ** 2).sum()) for a, b in zip(after, before)))
    assert moved == pytest.approx(0.1 * 0.001, rel=1e-3)  # the gradient's norm is far above 0.001: clipped to it


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path, local):
    _, _, results, lines = trained(tmp_path, local, "steps=100", "eval_every=5", "early_stop.patience=2",
                                   "early_stop.min_delta=1.0")  # no accuracy can improve by 1.0
    evals = [line["step"] for line in lines if line["kind"] == "eval"]
    assert evals == [5, 10, 15]  # the first sets the best, two more without improvement stop the run
    assert results["steps"] == 15 and max(line["step"] for line in lines) == 15


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ("linear", [0.25, 0.5, 0.75, 1.0, 0.8, 0.6, 0.4, 0.2]),
    ("cosine", [0.25, 0.5, 0.75, 1.0] + [(1 + math.cos(math.pi * k / 5)) / 2 for k in (1, 2, 3, 4)]),
    ("step", [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.1, 0.01]),
])
def test_warmup_then_schedule(schedule, expected):
    """Warm-up reaches the peak at its last step; the decay starts below it and ends above 0."""
    factor = LearningRateFactor(schedule, warmup_steps=4, total_steps=8)
    assert [factor(step) for step in range(8)] == pytest.approx(expected)


def test_the_lr_in_metrics_follows_the_schedule(tmp_path, local):
    _, _, _, lines = trained(tmp_path, local, "steps=8", "lr=0.2", "warmup_steps=4", "schedule=linear")
    lrs = [line["lr"] for line in lines if line["kind"] == "train"]
    assert lrs == pytest.approx([0.2 * f for f in (0.25, 0.5, 0.75, 1.0, 0.8, 0.6, 0.4, 0.2)])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not CUDA_AVAILABLE, reason=CUDA_SKIP_REASON or "needs CUDA")])])
def test_the_trainer_on_a_device_follows_the_cpu_run(tmp_path, local, device):
    """device = "cuda": the same losses as on the CPU within float32 rounding, checkpoints readable on the CPU."""
    _, _, _, cpu = trained(tmp_path, local, "steps=12", "device=cpu", name="cpu")
    trainer, _, _, there = trained(tmp_path, local, "steps=12", f"device={device}", name=f"on-{device}")
    assert trainer.device == device
    numpy.testing.assert_allclose([line["loss"] for line in there if line["kind"] == "train"],
                                  [line["loss"] for line in cpu if line["kind"] == "train"], rtol=1e-4)


def test_resume_refuses_to_change_what_the_checkpoint_fixes_and_accepts_more_steps(tmp_path, local):
    from distrain.train import ConfigError

    trained(tmp_path, local, "steps=4", "lr=0.01")
    for change in ("lr=0.1", "seed=3", "model_args.hidden=[8]", "batch_size=16"):
        config = load_config(assignments=[*SMALL, f"run_dir={tmp_path / 'run'}", "steps=4", "lr=0.01", change])
        with pytest.raises(ConfigError, match=rf"--resume: {change.split('=')[0].split('.')[0]}"):
            Trainer(config, 0, 1, resume=True, out=io.StringIO()).prepare()
    config = load_config(assignments=[*SMALL, f"run_dir={tmp_path / 'run'}", "steps=6", "lr=0.01"])
    results = Trainer(config, 0, 1, resume=True, out=io.StringIO()).prepare().run(local)
    assert results["steps"] == 6


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad", "rmsprop"])
def test_every_optimizer_name_trains_with_the_configured_hyperparameters(tmp_path, local, name):
    from distrain.train.config import OPTIMIZERS

    assert name in OPTIMIZERS
    trainer, _, _, lines = trained(tmp_path, local, f"optimizer={name}", "steps=20", "lr=0.02", "weight_decay=0.001",
                                   "momentum=0.5")
    group = trainer.optimizer.param_groups[0]
    assert type(trainer.optimizer).__name__.lower() == name and group["weight_decay"] == 0.001
    if name in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.5
    losses = [line["loss"] for line in lines if line["kind"] == "train"]
    assert numpy.mean(losses[-5:]) < numpy.mean(losses[:5])


@pytest.mark.parametrize("scaling, factor", [("sqrt", 3 ** 0.5), ("linear", 3), ("none", 1)])
def test_lr_scaling_multiplies_the_lr_by_the_batch_growth(tmp_path, local, scaling, factor):
    """One rank accumulating 3 batches is a 3x batch, as 3 ranks are: the optimizer gets lr * sqrt(3), 3 or 1."""
    trainer, _, _, lines = trained(tmp_path, local, "steps=2", "lr=0.01", "accumulate=3", "schedule=constant",
                                   f"lr_scaling={scaling}")
    assert [line["lr"] for line in lines if line["kind"] == "train"] == pytest.approx([0.01 * factor] * 2)
