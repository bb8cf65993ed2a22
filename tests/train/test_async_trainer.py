"""The trainer on asynchronous parameter-server training (`--backend ps --ps-mode async --staleness K`, 2 ranks).

Oracles: K = 0 trains bit for bit as synchronous training (the same losses at every step, the
same final parameters); with K = inf, every rank's staleness histograms count every step it
took, the train lines' staleness adds up to the histograms', TensorBoard holds the same
histograms, and the trainer's final held-out loss is that of the model it saved (every rank
evaluated the servers' latest parameters, which rank 0 saved); a resume of an asynchronous
run warns that the optimizer's state (on the servers) is lost and goes on counting staleness
from the checkpoint's counts.
"""
import concurrent.futures
import json
import os
import re
import shutil
import sys

import numpy
import pytest

from tests.process_group import run_group
from tests.train.test_metrics import read_events

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 12
EVALUATIONS = (5, 10, 12)  # eval_every = 5, and the end

CONFIG = f"""
model = "mlp"
dataset = "synthetic"
batch_size = 8
steps = {STEPS}
optimizer = "adam"
lr = 0.01
schedule = "cosine"
eval_every = 5
checkpoint_every = 5
print_every = 4
tensorboard_every = 1
plot = false

[model_args]
hidden = [16]
dropout = 0.2

[synthetic]
shape = [1, 4, 4]
classes = 3
samples = 128
eval_samples = 32
"""


def train(tmp_path, run_dir, *arguments, tensorboard=False):
    """`python -m distrain.launch -n 2 --backend ps ARGUMENTS` with CONFIG; its CompletedProcess."""
    config = tmp_path / f"{os.path.basename(run_dir)}.toml"  # one per run: two runs may start side by side
    config.write_text(CONFIG)
    environment = dict(os.environ, PYTHONPATH=REPOSITORY, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       DISTRAIN_CACHE=str(tmp_path.parent / "cache"))
    command = [sys.executable, "-m", "distrain.launch", "-n", "2", "--backend", "ps", *arguments, "--config",
               str(config), "--set", f"run_dir={run_dir}", "--set", f"tensorboard={str(tensorboard).lower()}"]
    result = run_group(command, 90, env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def lines(run_dir, kind):
    with open(os.path.join(run_dir, "metrics.jsonl")) as file:
        return [line for line in map(json.loads, file) if line["kind"] == kind]


def model_of(run_dir, step):
    import distrain

    return distrain.load(os.path.join(run_dir, "checkpoints", f"step-{step:08d}.dt"))["model"]


@pytest.mark.timeout(240)
def test_staleness_0_trains_bit_for_bit_as_synchronous_training(tmp_path):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # side by side: much of a short run is waiting
        runs = [pool.submit(train, tmp_path, tmp_path / "sync"),
                pool.submit(train, tmp_path, tmp_path / "async", "--ps-mode", "async", "--staleness", "0")]
        for run in runs:
            run.result()
    for step in (10, STEPS):
        synchronous, asynchronous = model_of(tmp_path / "sync", step), model_of(tmp_path / "async", step)
        assert list(synchronous) == list(asynchronous)
        for name in synchronous:
            assert numpy.asarray(asynchronous[name]).tobytes() == numpy.asarray(synchronous[name]).tobytes(), name
    for kind, key in (("train", "loss"), ("eval", "loss"), ("eval", "accuracy")):
        assert [line[key] for line in lines(tmp_path / "async", kind)] == \
            [line[key] for line in lines(tmp_path / "sync", kind)], (kind, key)
    assert "staleness_mean" not in lines(tmp_path / "sync", "train")[0] and not lines(tmp_path / "sync", "staleness")
    assert all(line["staleness_max"] == 0 for line in lines(tmp_path / "async", "train"))
    assert [(line["step"], line["counts"]) for line in lines(tmp_path / "async", "staleness")] == \
        [(step, [step]) for step in EVALUATIONS for _ in range(2)]


@pytest.fixture(scope="module")
def unbounded(tmp_path_factory):
    """A K = inf run with TensorBoard: (its run_dir, the launcher's stdout)."""
    tmp_path = tmp_path_factory.mktemp("unbounded")
    result = train(tmp_path, tmp_path / "run", "--ps-mode", "async", "--staleness", "inf", tensorboard=True)
    return tmp_path / "run", result.stdout


@pytest.mark.timeout(240)
def test_staleness_histograms_count_every_step_of_every_rank_in_metrics_and_tensorboard(unbounded):
    run_dir, stdout = unbounded
    histograms = lines(run_dir, "staleness")
    assert [(line["step"], line["rank"]) for line in histograms] == [(s, r) for s in EVALUATIONS for r in (0, 1)]
    for line in histograms:
        counts = line["counts"]
        assert sum(counts) == line["steps"] == line["step"] and counts[-1] > 0, line
        assert line["max"] == len(counts) - 1
        assert line["mean"] == pytest.approx(sum(k * n for k, n in enumerate(counts)) / line["step"], rel=1e-12)
    final = histograms[-2:]
    # each train line: the mean and max of both ranks' staleness at that step (log_every = 1)
    train_lines = lines(run_dir, "train")
    assert [line["step"] for line in train_lines] == list(range(1, STEPS + 1))
    assert sum(2 * line["staleness_mean"] for line in train_lines) == \
        sum(k * n for line in final for k, n in enumerate(line["counts"]))
    assert max(line["staleness_max"] for line in train_lines) == max(line["max"] for line in final)

    events = events_without_torch(run_dir)
    found = {(value.tag, event.step): value.histo for event in events for value in event.summary.value
             if value.HasField("histo")}
    assert sorted(found) == sorted((f"staleness/rank_{line['rank']}", line["step"]) for line in histograms)
    for line in histograms:
        histogram = found[(f"staleness/rank_{line['rank']}", line["step"])]
        assert list(histogram.bucket) == line["counts"] and histogram.num == line["step"]
        assert list(histogram.bucket_limit) == [k + 0.5 for k in range(len(line["counts"]))]
    assert {value.tag for event in events for value in event.summary.value} >= {"train/staleness_mean",
                                                                                  "train/staleness_max"}

    mean = sum(line["mean"] for line in final) / 2
    printed = re.search(r"staleness\s+mean ([0-9.]+), max (\d+) \(asynchronous, K = inf\)", stdout)
    assert printed and printed.groups() == (f"{mean:.2f}", str(max(line["max"] for line in final))), stdout


def events_without_torch(run_dir):
    """read_events, whose tensorboardX would import torch where it is installed (3-4 s): blocked, as metrics.py
    blocks it for its writer."""
    blocked = "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None
    try:
        return read_events(run_dir)
    finally:
        if blocked:
            del sys.modules["torch"]


@pytest.mark.timeout(240)
def test_every_rank_evaluates_the_servers_latest_parameters_which_rank_0_saves(unbounded, monkeypatch):
    """The final held-out loss (each rank evaluates half the samples) is the saved model's loss on all of them."""
    import distrain.nn as nn
    from distrain import no_grad
    from distrain.data import DataLoader
    from distrain.train import Trainer, load_config

    run_dir, _ = unbounded
    monkeypatch.setenv("DISTRAIN_CACHE", str(run_dir.parent.parent / "cache"))  # the run's converted data
    trainer = Trainer(load_config(str(run_dir / "config.toml")), 0, 2, resume=True).prepare()  # step 12's model
    trainer.model.eval()
    (inputs, labels), = DataLoader(trainer.splits.eval, batch_size=len(trainer.splits.eval))
    with no_grad():
        loss = nn.functional.cross_entropy(trainer.model(inputs), labels, reduction="sum").item()
    reported = lines(run_dir, "eval")[-1]
    assert reported["step"] == STEPS
    assert reported["loss"] == pytest.approx(loss / len(trainer.splits.eval), rel=1e-6)


@pytest.mark.timeout(240)
def test_resume_of_an_asynchronous_run_warns_that_the_optimizer_state_is_lost(unbounded, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(unbounded[0], run_dir)
    result = train(tmp_path, run_dir, "--ps-mode", "async", "--staleness", "inf", "--resume", "--set", "steps=18")
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert ("--resume: the checkpoint of step 12 comes from asynchronous parameter-server training, whose optimizer "
            "(Adam) kept its state on the parameter servers") in warnings[0]
    assert "started afresh" in warnings[0]
    assert [line["step"] for line in lines(run_dir, "train")] == list(range(1, 19))
    final = lines(run_dir, "staleness")[-2:]
    assert [(line["step"], line["rank"], sum(line["counts"])) for line in final] == [(18, 0, 18), (18, 1, 18)]


@pytest.mark.timeout(240)
def test_a_nonfinite_gradient_on_one_rank_stops_every_rank_where_they_next_meet(tmp_path):
    """Only the rank whose batch holds the NaN sample sees it, at step 3; the ranks next meet at step 5 (the
    averaging of the losses before the evaluation), where every rank stops and rank 0 names it once."""
    from distrain.data import DistributedSampler
    from tests.train.test_main_job import shard_directory

    data = shard_directory(tmp_path / "data", samples=80, nan_at=3)
    batches = {}  # (rank, step) -> the samples of that rank's batch in epoch 0, as the trainer's sampler orders them
    for rank in (0, 1):
        sampler = DistributedSampler(range(80), num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=True)
        sampler.set_epoch(0)
        order = list(sampler)
        batches.update({(rank, step): order[(step - 1) * 8:step * 8] for step in range(1, 6)})
    assert [key for key, samples in batches.items() if 3 in samples] == [(1, 3)]  # what the test is about
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    environment = dict(os.environ, PYTHONPATH=REPOSITORY, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       DISTRAIN_CACHE=str(tmp_path / "cache"))
    result = run_group([sys.executable, "-m", "distrain.launch", "-n", "2", "--backend", "ps", "--ps-mode", "async",
                        "--staleness", "1", "--config", str(config), "--set", f"dataset={data}", "--set",
                        "tensorboard=false", "--set", "print_every=100", "--set", f"run_dir={tmp_path / 'run'}"],
                       90, env=environment, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    said = [line for line in result.stderr.splitlines() if "non-finite" in line]
    assert len(said) == 1 and "Traceback" not in result.stderr, result.stderr
    assert said[0].startswith("[0] distrain.train: step 3: non-finite gradient (first in 1.weight on rank 1), found "
                              "by every rank at step 5, where the asynchronous ranks next met (until then rank 1's "
                              "non-finite gradients were left out of the servers' updates); the run stops"), said[0]
    train_lines = lines(tmp_path / "run", "train")
    assert [line["step"] for line in train_lines] == [1, 2, 3, 4, 5]  # written before the stop
    assert [line["step"] for line in train_lines if line["loss"] == "nan"] == [3]  # the mean over ranks
    assert not lines(tmp_path / "run", "eval") and not os.path.exists(tmp_path / "run" / "checkpoints")
