"""The main job: `python -m distrain.launch [-n N]` with no script trains the default CNN on digits,
writes what users look at, and refuses bad input in one line with exit code 2 on every rank count."""
import json
import os
import re
import shutil
import sys
import tomllib

import numpy
import pytest

from distrain.data import write_shards
from tests.process_group import run_group

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def launch(arguments, tmp_path, timeout=240, mpirun=0, **env):
    """`python -m distrain.launch ARGUMENTS` (mpirun=N: under a plain `mpiexec -n N`) in tmp_path."""
    environment = dict(os.environ, PYTHONPATH=REPOSITORY, DISTRAIN_CACHE=str(tmp_path.parent / "cache"), **env)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        environment.pop(variable, None)  # the launcher's own share of the cores is part of what is tested
    command = [sys.executable, "-m", "distrain.launch", *arguments]
    if mpirun:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        command = [mpiexec, "-n", str(mpirun)] + command
    return run_group(command, timeout, env=environment, cwd=tmp_path)


def read_lines(path):
    with open(path) as file:
        return [json.loads(line) for line in file]


@pytest.mark.timeout(600)
def test_the_default_job_reaches_97_percent_on_1_2_and_4_ranks_and_writes_its_run_dir(tmp_path):
    accuracies = {}
    for ranks in (1, 2, 4):
        run_dir = tmp_path / f"run{ranks}"
        result = launch(["-n", str(ranks), "--set", f"run_dir={run_dir}"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = read_lines(run_dir / "metrics.jsonl")
        train = [line for line in lines if line["kind"] == "train"]
        evals = [line for line in lines if line["kind"] == "eval"]
        steps = 30 * (1438 // ranks // 32)  # 30 epochs of the 1438 training digits, batch 32 per rank
        assert [line["step"] for line in train] == list(range(1, steps + 1))
        for line in train:
            assert {"step", "epoch", "loss", "lr", "samples_per_s", "data_wait_s", "comm_s"} <= set(line)
            assert line["samples_per_s"] > 0 and 0 <= line["lr"] <= 0.003 * ranks ** 0.5 * (1 + 1e-12)
        assert train[0]["epoch"] == 0 and train[-1]["epoch"] == 29
        assert numpy.mean([line["loss"] for line in train[-20:]]) < 0.2 * numpy.mean([l["loss"] for l in train[:20]])
        assert evals[-1]["step"] == steps and all(0 <= line["accuracy"] <= 1 for line in evals)
        accuracies[ranks] = evals[-1]["accuracy"]
        printed = float(re.search(r"final accuracy\s+([0-9.]+)%", result.stdout).group(1))
        assert printed == pytest.approx(100 * accuracies[ranks], abs=0.006)
        with open(run_dir / "config.toml", "rb") as file:
            written = tomllib.load(file)
        assert written["model"] == "cnn" and written["dataset"] == "digits" and written["run_dir"] == str(run_dir)
        assert sorted(os.listdir(run_dir / "checkpoints"))[-1] == f"step-{steps:08d}.dt"
        assert len(os.listdir(run_dir / "checkpoints")) == 3  # keep_checkpoints
        with open(run_dir / "curves.png", "rb") as picture:
            assert picture.read(8) == b"\x89PNG\r\n\x1a\n"
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
        if ranks > 1:
            assert "scaling efficiency" in result.stdout and re.search(rf"\n\S*\s+{ranks - 1}\s+[0-9.]+", result.stdout)
    assert min(accuracies.values()) >= 0.97, accuracies
    assert max(accuracies.values()) - min(accuracies.values()) <= 0.01, accuracies  # the same, whatever the ranks


def shard_directory(path, samples=64, nan_at=None):
    """train/ (with a NaN pixel in sample `nan_at`) and test/ shard directories of 4x4 images, 2 classes."""
    rng = numpy.random.default_rng(0)
    for split, count in (("train", samples), ("test", 16)):
        images = rng.standard_normal((count, 1, 4, 4)).astype(numpy.float32)
        if nan_at is not None and split == "train":
            images[nan_at, 0, 0, 0] = numpy.nan
        write_shards(str(path / split), {"image": images, "label": numpy.arange(count) % 2}, samples_per_shard=32)
    return path


BAD_INPUT = [
    (["--set", "learning_rate=0.1"], "unknown key 'learning_rate'"),
    (["--set", "batch_size=many"], 'batch_size = "many": expected an integer >= 1'),
    (["--set", "dataset=no/such/shards"], "dataset = 'no/such/shards': no such directory"),
    (["--set", "batch_size=5000"], "batch_size = 5000"),
    (["--config", "missing.toml"], "--config missing.toml: no such file"),
    (["--set", "model=resnet50"], "unknown model 'resnet50'"),
    (["--set", "model_args.widht=3"], "model 'cnn' has no argument 'widht'"),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["one process", "-n 2", "mpiexec -n 2"])
def test_bad_input_is_one_line_and_exit_code_2_on_every_rank_count(tmp_path, how):
    for arguments, words in BAD_INPUT:
        arguments = arguments + ["--set", f"run_dir={tmp_path / 'run'}"]
        if how == "-n 2":
            result = launch(["-n", "2", *arguments], tmp_path)
        else:
            result = launch(arguments, tmp_path, mpirun=2 if how.startswith("mpiexec") else 0)
        assert result.returncode == 2, (arguments, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("distrain.launch: error: ") and words in lines[0], \
            (arguments, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_a_run_dir_with_another_runs_checkpoints_needs_resume_and_debug_shows_the_traceback(tmp_path):
    run_dir = tmp_path / "run"
    first = launch(["--set", f"run_dir={run_dir}", "--set", "steps=3"], tmp_path)
    assert first.returncode == 0, first.stderr
    for arguments in (["-n", "2"], []):
        again = launch([*arguments, "--set", f"run_dir={run_dir}", "--set", "steps=6"], tmp_path)
        assert again.returncode == 2
        assert again.stderr.strip() == (f"distrain.launch: error: run_dir = '{run_dir}' holds another run's "
                                        "checkpoints (up to step 3); pass --resume to continue it, or set run_dir "
                                        "to a new directory")
    debug = launch(["--set", f"run_dir={run_dir}", "--debug"], tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    empty = launch(["--set", f"run_dir={tmp_path / 'new'}", "--resume"], tmp_path)
    assert empty.returncode == 2 and "has no checkpoint to resume from" in empty.stderr


@pytest.mark.timeout(300)
def test_a_nonfinite_gradient_stops_the_run_naming_the_step_and_parameter(tmp_path):
    data = shard_directory(tmp_path / "data", nan_at=5)  # every step's 2 x 32 samples hold the NaN sample
    result = launch(["-n", "2", "--set", f"dataset={data}", "--set", "batch_size=32", "--set", "model=mlp",
                     "--set", f"run_dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    message = [line for line in result.stderr.splitlines() if "non-finite" in line]
    assert len(message) == 1, result.stderr
    assert "step 1: non-finite gradient (first in 1.weight); the run stops" in message[0], message
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(300)
def test_skipped_nonfinite_steps_are_exactly_the_steps_with_the_bad_sample(tmp_path):
    """nonfinite = "skip": the step whose batch holds the NaN sample is skipped, once per epoch, and no other."""
    data = shard_directory(tmp_path / "data", samples=80, nan_at=7)
    run_dir = tmp_path / "run"
    result = launch(["--set", f"dataset={data}", "--set", "batch_size=8", "--set", "model=mlp", "--set", "epochs=3",
                     "--set", "nonfinite=skip", "--set", f"run_dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr
    train = [line for line in read_lines(run_dir / "metrics.jsonl") if line["kind"] == "train"]
    nan_steps = [line["step"] for line in train if line["loss"] == "nan"]
    skipped = [int(step) for step in re.findall(r"step (\d+): non-finite gradient \(first in 1.weight\); step skipped",
                                                 result.stdout + result.stderr)]
    assert len(skipped) == 3 and skipped == nan_steps, (skipped, nan_steps)
    assert [(step - 1) // 10 for step in skipped] == [0, 1, 2]  # one in each epoch of 10 steps
    assert all(numpy.isfinite(line["loss"]) for line in train if line["step"] not in skipped)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
def test_timeline_shows_every_part_of_the_step_on_each_rank(tmp_path, backend):
    run_dir = tmp_path / "run"
    result = launch(["-n", "2", "--backend", backend, "--timeline", "--set", f"run_dir={run_dir}", "--set", "steps=6",
                     "--set", "checkpoint_every=3", "--set", "eval_every=3"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(run_dir / "timeline.json") as file:
        events = json.load(file)["traceEvents"]
    spans = [event for event in events if event["ph"] == "X"]
    for pid in (1, 2):  # rank + 1 (Perfetto treats pid 0 specially)
        names = [event["name"] for event in spans if event["pid"] == pid]
        for name in ("data wait", "forward", "backward", "optimizer step", "evaluate", "checkpoint"):
            assert name in names, (pid, name, sorted(set(names)))
        comm = "allreduce" if backend == "mpi" else "push/pull"
        assert names.count(comm) >= 6, (pid, names.count(comm))  # at least one bucket per step
        assert names.count("forward") == 6 and names.count("optimizer step") == 6
    assert not [name for name in os.listdir(run_dir) if name.endswith(".part")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["-n 2", "mpiexec -n 2"])
def test_runs_without_a_run_dir_are_numbered_and_resume_takes_the_newest(tmp_path, how):
    def start(*arguments):
        if how == "-n 2":
            return launch(["-n", "2", *arguments], tmp_path)
        return launch(list(arguments), tmp_path, mpirun=2)

    for number in (1, 2):
        result = start("--set", "steps=2")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"writing to runs/{number}" in result.stdout
    assert sorted(os.listdir(tmp_path / "runs")) == ["1", "2"]  # every rank wrote to the same one
    result = start("--set", "steps=4", "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming from step 2" in result.stdout
    steps = [line["step"] for line in read_lines(tmp_path / "runs" / "2" / "metrics.jsonl") if line["kind"] == "train"]
    assert steps == [1, 2, 3, 4] and sorted(os.listdir(tmp_path / "runs")) == ["1", "2"]
    again = start("--set", "steps=4", "--resume")
    assert again.returncode == 0 and "runs/2 finished at step 4 already; nothing to do" in again.stdout


def test_the_launcher_gives_each_rank_its_share_of_the_cores():
    from distrain.launch import THREAD_VARIABLES, threads_per_rank

    cores = len(os.sched_getaffinity(0))
    assert threads_per_rank(2, environ={}) == {name: str(max(1, cores // 2)) for name in THREAD_VARIABLES}
    assert threads_per_rank(4 * cores, environ={})["OMP_NUM_THREADS"] == "1"
    assert threads_per_rank(1, environ={}) == {}  # one rank: its BLAS may use every core
    assert threads_per_rank(2, environ={"OPENBLAS_NUM_THREADS": "3"}) == {}  # the user's choice wins


@pytest.mark.timeout(300)
def test_two_ranks_accumulating_two_batches_of_8_train_like_one_rank_with_batches_of_32(tmp_path):
    """Step k of both runs averages the gradient over the same 32 samples of the epoch's order (2 ranks take
    alternate positions, 16 each in two micro-batches), so the losses agree to rounding; a reduction of the
    wrong micro-batch (no_sync misplaced) or a missing one would make the ranks, and the losses, drift apart."""
    common = ["--set", "model=mlp", "--set", "model_args.hidden=[32]", "--set", "dataset=synthetic", "--set",
              "synthetic.shape=[1, 6, 6]", "--set", "synthetic.classes=4", "--set", "synthetic.samples=512",
              "--set", "synthetic.eval_samples=64", "--set", "steps=12", "--set", "optimizer=sgd", "--set", "lr=0.2",
              "--set", "lr_scaling=none", "--set", "schedule=constant", "--set", "plot=false", "--set",
              "tensorboard=false"]
    whole = launch([*common, "--set", "batch_size=32", "--set", f"run_dir={tmp_path / 'whole'}"], tmp_path)
    split = launch(["-n", "2", *common, "--set", "batch_size=8", "--set", "accumulate=2", "--set",
                    f"run_dir={tmp_path / 'split'}"], tmp_path)
    assert whole.returncode == 0 and split.returncode == 0, whole.stderr + split.stdout + split.stderr
    losses = [[line["loss"] for line in read_lines(tmp_path / name / "metrics.jsonl") if line["kind"] == "train"]
              for name in ("whole", "split")]
    assert len(losses[0]) == len(losses[1]) == 12
    numpy.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert losses[0][-1] < losses[0][0]
