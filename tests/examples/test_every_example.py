"""Every script in examples/ runs as a user runs it, briefly, and shows what its docstring says.

Each example is started as its own process: `python examples/NAME.py ...`, or for the
multi-process ones `python -m distrain.launch -n 2 examples/NAME.py ...` (with a timeout
that kills the whole process group). RUNS holds, per example, the flags that make it short
and a check of a value it promises, against a closed form or an oracle where there is one
(the weights that generated the data, scikit-learn's digits, the uninterrupted run). An
example without an entry fails, saying to add one.

Deeper checks of some examples live beside this file and are not repeated here:
tests/examples/test_examples.py (in-process: the lecture progression's losses, train_digits
independent of its worker count, transfer_learning's checkpoint), tests/launch/test_launch.py
(ddp_digits to 0.9 on 2 ranks, custom_loop under launchers/mpirun.sh) and
tests/train/test_resume.py (the trainer's exact resume on 1 and 2 ranks, also killed while
writing a checkpoint).
"""
import ast
import glob
import math
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from distrain.data import ShardDataset
from distrain.train.metrics import read_metrics

from .test_examples import first_and_last_losses

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPOSITORY, "examples")
TIMEOUT_SECONDS = 180
IN_PROCESS = "tests/examples/test_examples.py"


def number(pattern, output):
    """The number the regular expression's first group finds in `output` (fails naming the pattern if absent)."""
    found = re.search(pattern, output)
    assert found, f"no line matching {pattern!r} in the output:\n{output}"
    return float(found.group(1))


def the_loss_falls(factor):
    def check(output, tmp_path):
        first, last = first_and_last_losses(output)
        assert last < first * factor, f"the loss went from {first} to {last}, expected below {first * factor}"
    return check


def gradcheck_passes_and_the_loss_falls(output, tmp_path):
    assert "gradcheck: True" in output
    the_loss_falls(0.01)(output, tmp_path)


def the_module_fits_the_batches(output, tmp_path):
    # "loss on all 64 samples" sums over 8 batches of 8: compare it with 8 x epoch 0's mean batch loss.
    first_epoch = number(r"epoch 0: mean batch loss ([0-9.]+)", output)
    assert number(r"loss on all 64 samples: ([0-9.]+)", output) < 0.5 * 8 * first_epoch


def only_the_head_trains(output, tmp_path):
    before = number(r"accuracy with an untrained head ([0-9.]+)", output)
    assert number(r"training only the head: accuracy ([0-9.]+)", output) > max(before, 0.5) + 0.2
    assert "frozen backbone unchanged: True" in output
    assert (tmp_path / "pretrained.ckpt").exists()


def the_shards_hold_scikit_learns_digits(output, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    dataset = ShardDataset(str(tmp_path / "shards"), verify="full")
    assert len(dataset) == 1797 and f"in {math.ceil(1797 / 500)} shards" in output, output
    first, last = dataset[0], dataset[1796]
    np.testing.assert_array_equal(np.asarray(first["image"])[0], (digits.images[0] / 16).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(last["image"])[0], (digits.images[1796] / 16).astype(np.float32))
    assert (int(first["label"]), int(last["label"])) == (digits.target[0], digits.target[1796])


def the_digits_are_learnt(bound):
    def check(output, tmp_path):
        assert number(r"test accuracy: ([0-9.]+)", output) > bound
        assert len(ShardDataset(str(tmp_path / "digits"))) == 1797, "the script makes the shards on first run"
    return check


def the_ranks_learn_the_generating_weights(output, tmp_path):
    learned = [float(v) for v in re.search(r"learned\s+\[([^\]]+)\]", output).group(1).split(",")]
    assert learned == pytest.approx([2.0, -3.0, 0.5], abs=0.01), output
    assert "loss averaged over 2 ranks" in output


def every_step_of_every_rank_has_a_staleness(output, tmp_path):
    assert number(r"test accuracy: ([0-9.]+) \(2 ranks\)", output) > 0.85
    steps = 2 * (4096 // 2 // 32)  # 2 epochs of each rank's share, 32 per batch
    assert f"({steps} steps on rank 0)" in output
    for rank in (0, 1):
        histogram = ast.literal_eval(re.search(rf"rank {rank}: staleness {{staleness: steps}} (\{{[^}}]*\}})", output)
                                     .group(1))
        assert sum(histogram.values()) == steps and min(histogram) >= 0, (rank, histogram)


def the_metrics_file_gives_the_printed_accuracy(output, tmp_path):
    records = read_metrics(str(tmp_path / "run"))
    train = [r for r in records if r["kind"] == "train"]
    accuracy = [r["accuracy"] for r in records if r["kind"] == "eval"][-1]
    assert f"final accuracy from metrics.jsonl: {accuracy:.4f} (train() returned {accuracy:.4f})" in output
    assert accuracy > 0.7
    assert train[0]["loss"] == pytest.approx(math.log(10), abs=0.2), "an untrained 10-class model starts near ln 10"
    assert train[-1]["loss"] < 0.7 * train[0]["loss"]


def the_registered_model_is_the_one_trained(output, tmp_path):
    hidden, features, classes = 16, 64, 10
    parameters = features * hidden + hidden + hidden * classes + classes
    assert f": {parameters} parameters (hidden.weight ({hidden}, {features})" in output, output
    assert number(r"held-out accuracy ([0-9.]+)", output) > 0.8
    assert 'model = "two_layer"' in (tmp_path / "run" / "config.toml").read_text()


def the_resumed_losses_are_the_uninterrupted_ones(output, tmp_path):
    assert "bit for bit: True" in output and "exit code -9" in output, output
    resumed_from = int(number(r"resuming from step (\d+)", output))
    assert 50 <= resumed_from < 300 and resumed_from % 25 == 0, "killed mid-run, resumed from a checkpoint"
    losses = [{r["step"]: r["loss"] for r in read_metrics(str(tmp_path / name)) if r["kind"] == "train"}
              for name in ("uninterrupted", "crashed")]
    assert sorted(losses[0]) == list(range(1, 301)) and losses[1] == losses[0]


@dataclass
class Run:
    """How to run one example briefly, and what to check. `{tmp}` in an argument is the test's own directory."""

    arguments: list
    check: object
    ranks: int = 0  # 0: `python examples/NAME.py`; N: under `python -m distrain.launch -n N`
    launcher_arguments: tuple = ()  # the launcher's own flags, before the script (e.g. --backend ps)
    elsewhere: str = ""  # the file of a deeper test of this example, if there is one


RUNS = {
    "two_layer_net": Run(["--steps", "100"], the_loss_falls(0.001)),
    "two_layer_net_nn": Run(["--steps", "100"], the_loss_falls(0.01), elsewhere=IN_PROCESS),
    "two_layer_net_optim": Run(["--steps", "100"], the_loss_falls(0.2), elsewhere=IN_PROCESS),
    "two_layer_net_module": Run(["--epochs", "3"], the_module_fits_the_batches, elsewhere=IN_PROCESS),
    "custom_function": Run(["--steps", "100"], gradcheck_passes_and_the_loss_falls, elsewhere=IN_PROCESS),
    "transfer_learning": Run(["--pretrain-steps", "60", "--steps", "40", "--checkpoint", "{tmp}/pretrained.ckpt"],
                             only_the_head_trains, elsewhere=IN_PROCESS),
    "make_digits_shards": Run(["--out", "{tmp}/shards", "--samples-per-shard", "500"],
                              the_shards_hold_scikit_learns_digits),
    "train_digits": Run(["--epochs", "2", "--workers", "2", "--data", "{tmp}/digits"], the_digits_are_learnt(0.6),
                        elsewhere=IN_PROCESS),
    "ddp_digits": Run(["--epochs", "1", "--data", "{tmp}/digits"], the_digits_are_learnt(0.6), ranks=2,
                      elsewhere="tests/launch/test_launch.py"),
    "custom_loop": Run([], the_ranks_learn_the_generating_weights, ranks=2, elsewhere="tests/launch/test_launch.py"),
    "param_server_async": Run(["--epochs", "2"], every_step_of_every_rank_has_a_staleness, ranks=2,
                              launcher_arguments=("--backend", "ps", "--ps-mode", "async", "--staleness", "2")),
    "trainer_from_python": Run(["--epochs", "2", "--run-dir", "{tmp}/run"], the_metrics_file_gives_the_printed_accuracy),
    "custom_model_in_trainer": Run(["--epochs", "2", "--hidden", "16", "--run-dir", "{tmp}/run"],
                                   the_registered_model_is_the_one_trained),
    "resume_after_crash": Run(["--steps", "300", "--checkpoint-every", "25", "--workdir", "{tmp}"],
                              the_resumed_losses_are_the_uninterrupted_ones),
}


def example_names():
    return sorted(os.path.splitext(os.path.basename(path))[0] for path in glob.glob(os.path.join(EXAMPLES, "*.py")))


def missing_entry_message(name):
    return (f"examples/{name}.py has no entry in RUNS in tests/examples/test_every_example.py: add one with the flags "
            "that make it run in a few seconds and a check of a value it promises")


def test_every_example_has_an_entry_and_every_entry_an_example():
    names = example_names()
    assert "two_layer_net" in names, f"no examples found in {EXAMPLES}"
    assert not [name for name in names if name not in RUNS], "\n".join(
        missing_entry_message(name) for name in names if name not in RUNS)
    assert not set(RUNS) - set(names), f"RUNS has entries for examples that are gone: {sorted(set(RUNS) - set(names))}"


@pytest.mark.parametrize("name", example_names())
def test_the_docstring_says_what_it_shows_and_how_to_run_it(name):
    with open(os.path.join(EXAMPLES, f"{name}.py"), encoding="utf-8") as file:
        docstring = ast.get_docstring(ast.parse(file.read()))
    assert docstring and len(docstring.splitlines()[0]) > 20, f"examples/{name}.py: start with a docstring"
    assert f"examples/{name}.py" in docstring and "python " in docstring, \
        f"examples/{name}.py: its docstring should show the command that runs it"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """The trainer's dataset cache, shared by this file's runs (the digits are converted once)."""
    return tmp_path_factory.mktemp("cache")


def run_example(name, run, tmp_path, cache_dir):
    """(exit code, stdout and stderr) of the example's brief run; the process group is killed on timeout."""
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in run.arguments]
    script = os.path.join(EXAMPLES, f"{name}.py")
    launcher = ([sys.executable, "-m", "distrain.launch", "-n", str(run.ranks), *run.launcher_arguments] if run.ranks
                else [sys.executable])
    env = dict(os.environ, PYTHONPATH=REPOSITORY, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               DISTRAIN_CACHE=str(cache_dir), PYTHONWARNINGS="error")  # warnings are errors, as in pytest.ini
    process = subprocess.Popen([*launcher, script, *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"examples/{name}.py ran past {TIMEOUT_SECONDS} s and was killed; its output:\n{output}")
    return process.returncode, output


@pytest.mark.timeout(TIMEOUT_SECONDS + 60)
@pytest.mark.parametrize("name", example_names())
def test_the_example_runs_briefly_and_shows_what_it_says(name, tmp_path, cache_dir):
    if name not in RUNS:
        pytest.fail(missing_entry_message(name))
    code, output = run_example(name, RUNS[name], tmp_path, cache_dir)
    assert code == 0, f"examples/{name}.py exited with {code}:\n{output}"
    RUNS[name].check(output, tmp_path)


@pytest.mark.parametrize("name", sorted(name for name, run in RUNS.items() if run.elsewhere))
def test_the_deeper_test_named_for_an_example_runs_it(name):
    with open(os.path.join(REPOSITORY, RUNS[name].elsewhere), encoding="utf-8") as file:
        assert name in file.read(), f"RUNS[{name!r}].elsewhere names {RUNS[name].elsewhere}, which does not run it"
