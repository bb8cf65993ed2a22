"""run_dir/metrics.jsonl: one JSON object per line, the record of a run that tools and tests read.

Rank 0 writes it; other ranks write nothing. Two kinds of lines::

    {"kind": "train", "step": 120, "epoch": 3, "loss": 0.123..., "lr": 0.05, "samples_per_s": 1534.2, ...}
    {"kind": "eval", "step": 120, "epoch": 3, "accuracy": 0.9812, ...}

and, in asynchronous parameter-server training, histograms of each rank's staleness at each
evaluation (train/asynchronous.py; `histogram`, the one kind of line that holds a list)::

    {"kind": "staleness", "step": 120, "epoch": 3, "rank": 1, "steps": 120, ..., "counts": [2, 115, 3]}

Guarantees:
- Floats round-trip exactly: a line holds Python's shortest repr of the float64 value, which
  `json.loads` reads back to the same bits (a float32 value is widened to float64 exactly).
  Nothing is rounded: the resume test compares losses bit for bit.
- JSON has no NaN or infinity. A non-finite value is written as the string "nan", "inf" or
  "-inf" (which `float()` reads back) and the line lists its keys under "nonfinite", e.g.
  `{"kind": "train", "step": 7, "loss": "nan", ..., "nonfinite": ["loss"]}`; `read_metrics`
  turns them back into floats. Every line stays strict JSON (jq, pandas, other languages).
- Lines reach the OS at `flush()` (the trainer's: after each batch of steps, one system call
  for up to 50 lines, where line buffering cost one per line: 0.5% of a small CNN's step), at
  `sync()` (every checkpoint, also fsynced) and at `close()`. A killed run loses what it had not
  flushed, at most a torn last line in the file, which readers skip; resuming rewrites the
  file to its checkpoint anyway.
- Resuming from the checkpoint of step S rewrites the file atomically with only the lines of
  steps <= S (the resumed run writes the later steps again), so the file of a run killed and
  resumed is line for line that of the uninterrupted run. Hence the trainer writes every line
  of step S before it writes the checkpoint of step S.

With tensorboardX installed, the same numbers also go to TensorBoard event files in run_dir
(tags "train/loss", "train/lr", "train/samples_per_s", "train/data_wait_s", "eval/accuracy", ...;
every finite number of a line but its step and time, which are the event's step and wall time), and
the histograms as histograms ("staleness/rank_1", ...).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import sys

from ..durable import replace_file
from ..errors import ArgumentError, MetricsError

METRICS_FILE = "metrics.jsonl"
_RESERVED = ("kind", "step", "nonfinite")
_NOT_SCALARS = ("step", "time")  # not plotted in TensorBoard: step is the x axis, time its wall time


def _say_on_stderr(message):
    sys.stderr.write(message + "\n")


class MetricsLog:
    """Appends the lines of run_dir/metrics.jsonl (rank 0 only) and mirrors them to TensorBoard.

    Args:
        run_dir: the run's directory (created if missing).
        resume_step: None for a new run, which starts an empty file. The step of the checkpoint a
            resumed run starts from: the file keeps only the lines with step <= resume_step
            (rewritten atomically; a torn last line is dropped) and new lines are appended.
        tensorboard: also write TensorBoard event files into run_dir when tensorboardX is
            installed; without it, `say` gets one line and the run goes on without them.
        say: where that one informational line goes (default: stderr); the trainer passes
            its Progress.write so the line does not break a progress bar.

    Example::

        with MetricsLog(run_dir) as metrics:
            metrics.train(step=1, epoch=0, loss=2.3, lr=0.1, samples_per_s=1200.0, data_wait_s=0.001)
            metrics.eval(step=1, epoch=0, accuracy=0.42)
        read_metrics(run_dir)[0]["loss"]  # 2.3
    """

    def __init__(self, run_dir, *, resume_step=None, tensorboard=True, say=None, tensorboard_every=1):
        """`tensorboard_every`: training lines go to TensorBoard only at steps that are multiples of it
        (each scalar costs tensorboardX about 90 us; evaluation lines always go)."""
        os.makedirs(run_dir, exist_ok=True)
        self.tensorboard_every = tensorboard_every
        self.path = os.path.join(run_dir, METRICS_FILE)
        if resume_step is None:
            self._file = open(self.path, "w", encoding="utf-8")
        else:
            _keep_steps_up_to(self.path, resume_step)
            self._file = open(self.path, "a", encoding="utf-8")
        self._tensorboard = None
        if tensorboard:
            self._tensorboard = _open_tensorboard(run_dir, resume_step, say or _say_on_stderr)

    def train(self, step, epoch, loss, lr, samples_per_s, **extra):
        """One training line; `extra` adds named numbers (data_wait_s, comm_s, time, ...)."""
        self.write("train", step, epoch=epoch, loss=loss, lr=lr, samples_per_s=samples_per_s, **extra)

    def eval(self, step, epoch, accuracy, **extra):
        """One evaluation line; `accuracy` is a fraction in [0, 1], not a percentage."""
        accuracy = _plain("accuracy", accuracy)
        if isinstance(accuracy, float) and math.isfinite(accuracy) and not 0.0 <= accuracy <= 1.0:
            raise ArgumentError(f"MetricsLog.eval: accuracy is a fraction in [0, 1], got {accuracy!r} at step "
                                f"{step} (a percentage? divide it by 100)")
        self.write("eval", step, epoch=epoch, accuracy=accuracy, **extra)

    def write(self, kind, step, **values):
        """One line of any `kind` (train and eval call this): {"kind", "step", **values}."""
        record, values = self._record(kind, step, values)
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        if self._tensorboard is not None and (kind != "train" or step % self.tensorboard_every == 0):
            self._add_scalars(kind, int(step), values)

    def histogram(self, kind, step, counts, *, tag, **values):
        """One line holding a histogram of whole numbers, `counts[k]` = how often k was seen, beside the numbers
        `values`; TensorBoard gets the histogram as `tag` (one bar per whole number), not the numbers.

        Example (the trainer's, in asynchronous mode: the staleness of rank 1's 120 gradients)::

            metrics.histogram("staleness", 120, [2, 115, 3], tag="staleness/rank_1", rank=1)
            # {"kind": "staleness", "step": 120, "rank": 1, "counts": [2, 115, 3]}
        """
        if not isinstance(counts, (list, tuple)) or not all(
                isinstance(count, numbers.Integral) and not isinstance(count, bool) and count >= 0 for count in counts):
            raise MetricsError(f"metrics histogram '{tag}' of step {step}: counts must be a list of whole numbers "
                               f">= 0 (counts[k]: how often k was seen), got {counts!r:.80}")
        counts = [int(count) for count in counts]
        record, _ = self._record(kind, step, values)
        record["counts"] = counts
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        if self._tensorboard is not None and sum(counts):
            seen = [value for value, count in enumerate(counts) if count]
            self._tensorboard.add_histogram_raw(
                tag, min=seen[0], max=seen[-1], num=sum(counts),
                sum=sum(value * count for value, count in enumerate(counts)),
                sum_squares=sum(value * value * count for value, count in enumerate(counts)),
                bucket_limits=[value + 0.5 for value in range(len(counts))],  # bar k: (k - 0.5, k + 0.5]
                bucket_counts=counts, global_step=int(step))

    @staticmethod
    def _record(kind, step, values):
        """The line's dict, and its values made plain (non-finite ones as strings in the line, NaN in `values`)."""
        if not isinstance(step, numbers.Integral) or isinstance(step, bool):
            raise MetricsError(f"metrics line of kind '{kind}': step must be an integer, got {step!r}")
        for key in _RESERVED:
            if key in values:
                raise MetricsError(f"metrics line of step {step}: '{key}' is a reserved key of metrics.jsonl "
                                   f"({', '.join(_RESERVED)}); give the value another name")
        values = {key: _plain(key, value) for key, value in values.items()}
        record = {"kind": kind, "step": int(step), **values}
        nonfinite = [key for key, value in values.items() if isinstance(value, float) and not math.isfinite(value)]
        for key in nonfinite:
            record[key] = repr(values[key])  # 'nan', 'inf', '-inf'
        if nonfinite:
            record["nonfinite"] = nonfinite
        return record, values

    def _add_scalars(self, kind, step, values):
        """Numbers to TensorBoard; not the non-finite ones (the trainer reports those, and
        tensorboardX would log a warning for each)."""
        walltime = values.get("time")
        for key, value in values.items():
            if (key not in _NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value)):
                self._tensorboard.add_scalar(f"{kind}/{key}", value, step, walltime=walltime)

    def flush(self):
        """Hand the lines written so far to the OS (the trainer does after each batch of steps' lines: one
        system call for many lines, where line buffering made one per line)."""
        self._file.flush()

    def sync(self):
        """Make the lines written so far survive a power cut (fsync); the trainer calls it when it checkpoints."""
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def close(self):
        if not self._file.closed:
            self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def read_metrics(run_dir) -> list:
    """The lines of run_dir/metrics.jsonl (or of that file's path) as dicts, in file order.

    A torn last line (a run killed mid-write) is skipped; non-finite values come back as
    floats. A damaged line before the last raises MetricsError naming the file and line.
    """
    path = run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        raise MetricsError(f"no {METRICS_FILE} in {run_dir}: is this the run_dir of a run that has started?")
    records = []
    for _, record in _read_lines(path):
        for key in record.get("nonfinite", ()):
            record[key] = float(record[key])
        records.append(record)
    return records


def _read_lines(path):
    """[(line text, parsed dict)] of the file at `path`, without a torn last line."""
    with open(path, encoding="utf-8") as file:
        lines = file.read().split("\n")
    parsed = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if number == len(lines):  # the last line, without its newline: cut by a kill mid-write
                break
            raise MetricsError(f"{path}, line {number}: not a JSON object ({line[:80]!r}); the file is damaged: "
                               "delete or repair that line")
        parsed.append((line, record))
    return parsed


def _keep_steps_up_to(path, resume_step):
    """Rewrite `path` atomically with only its lines of steps <= resume_step (see the module docstring)."""
    if not os.path.exists(path):
        return
    kept = [line for line, record in _read_lines(path)
            if not isinstance(record.get("step"), numbers.Real) or record["step"] <= resume_step]
    replace_file(path, lambda file: file.write("".join(line + "\n" for line in kept).encode("utf-8")))


def _plain(key, value):
    """`value` as a JSON-ready Python scalar: numpy scalars and 0-d arrays become int, float or bool."""
    if type(value) in (float, int):  # the common case first: the trainer writes a line per step
        return value
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a 0-d array, a numpy bool
        return _plain(key, value.item())
    raise MetricsError(f"metric '{key}' is a {type(value).__name__}, not a number: metrics.jsonl holds scalars "
                       "(call .item() on a one-element tensor)")


def _open_tensorboard(run_dir, resume_step, say):
    """A tensorboardX SummaryWriter on run_dir, or None (after one line to `say`) without tensorboardX."""
    blocked = "torch" not in sys.modules  # tensorboardX imports torch if it can: 1-3 s per rank, for nothing here
    if blocked:
        sys.modules["torch"] = None  # `import torch` raises ImportError: tensorboardX works on NumPy alone
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        say("distrain.train: tensorboardX is not installed, so no TensorBoard event files are written "
            "(pip install 'distrain[viz]' to get them)")
        return None
    finally:
        if blocked:
            del sys.modules["torch"]  # the user's own `import torch` works as ever
    # purge_step: TensorBoard hides the events that earlier files in run_dir hold from this step
    # on, which this run writes again (no doubled curves after a resume or a restart from scratch).
    purge_step = 0 if resume_step is None else resume_step + 1
    return SummaryWriter(logdir=run_dir, purge_step=purge_step, flush_secs=10)
