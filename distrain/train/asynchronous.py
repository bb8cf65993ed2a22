"""The trainer in asynchronous parameter-server mode (`--backend ps --ps-mode async --staleness K`): what changes.

    python -m distrain.launch -n 4 --backend ps --ps-mode async --staleness 2

NOTE [ Stale synchronous parallel ] (comm/ps/stale_synchronous.py) says how such a run
trains: each rank pushes its own gradient, the servers run the optimizer, and a rank runs
at most K steps ahead of the slowest. What the trainer does about it:

- Parameters: a rank holds the version its last push was answered with, which lacks the
  updates of gradients pushed after it. Before each evaluation, each checkpoint and at the
  end every rank pulls (DistributedDataParallel.pull_parameters: a barrier, the servers'
  parameters, rank 0's BatchNorm buffers), so that the accuracy is that of one model: the
  servers' after every rank's steps so far, the one the checkpoint saves.
- Each rank's gradient is its own, not the average every rank holds in synchronous mode.
  clip_grad_norm clips each rank's own gradient (the servers then divide it by the number of
  ranks). A non-finite gradient is seen by the rank that computed it alone, which pushes
  zeros in its place: a rank must push at every step (with K = 0 each update waits for a
  gradient of every rank), so its share of that update is left out, while the servers'
  optimizer still steps (momentum or Adam's moments move the parameters by what they hold).
  With nonfinite = "skip" that rank says so; with "stop" it tells the others where the ranks
  next meet (the averaging of the losses, which is also before any evaluation or checkpoint),
  and there every rank stops, naming the step, the parameter and the rank. A rank stopping
  alone would leave the others waiting for it at that meeting until their timeout.
- The optimizer's state (momentum, Adam's moments) lives on the servers, out of the
  checkpoint's reach: a resumed run starts it afresh and says so (resume_warning). With
  K >= 1 the order in which gradients arrive varies from run to run, so no asynchronous run
  repeats exactly anyway; K = 0 trains as synchronous training does, bit for bit.
- The ranks still meet where the trainer needs every rank: the averaging of the losses
  (every print_every or 50 steps), evaluations and checkpoints. Between them a rank runs up
  to K steps ahead.

Staleness, recorded per rank and per step (AsynchronousTraining), goes to:
- the train lines of metrics.jsonl: staleness_mean and staleness_max over every rank's
  gradients of the steps since the previous train line (with log_every = 1: this step's);
- at each evaluation, one line per rank holding its histogram since the start of the run
  (kept in checkpoints; after a resume on another number of ranks, since the resume),
  `{"kind": "staleness", "step": 120, "rank": 1, "steps": 120, "mean": 1.02, "max": 3,
  "counts": [2, 115, 2, 1]}` (counts[k]: the rank's steps whose gradient had staleness k),
  and the same histogram in TensorBoard as "staleness/rank_1";
- the summary table: each rank's mean and largest staleness, and the whole job's.
A gradient's staleness is the number of updates the servers applied between the parameters
it was computed on and its own: about N-1 for N ranks in step, 0 with K = 0.
"""
from __future__ import annotations

import collections
import math

import numpy


class AsynchronousTraining:
    """The trainer's companion in asynchronous mode: staleness per step and since the start, non-finite verdicts.

    `of(ddp, comm, names)` makes one when `ddp` trains asynchronously, else returns None.
    `names`: the model's parameter names, in the same order on every rank (a verdict names one
    by its index).
    """

    def __init__(self, read_histogram, bound, rank, names):
        self.read_histogram = read_histogram  # {staleness: steps}, one more count per optimizer step
        self.bound = bound  # K: an int, or math.inf
        self.rank, self.names = rank, list(names)
        self.earlier = collections.Counter()  # the counts of the steps before a resume
        self.seen = read_histogram()
        self.window = []  # every rank's staleness of the steps since the last train line
        self.found = None  # "stop": (step, parameter index) of this rank's first non-finite gradient

    @classmethod
    def of(cls, ddp, comm, names):
        if ddp is None or ddp.staleness_histogram is None:
            return None
        return cls(lambda: ddp.staleness_histogram, comm.staleness, comm.rank, names)

    def step_taken(self) -> int:
        """The staleness of the step just taken: the one whose count grew."""
        now = self.read_histogram()
        grown = [staleness for staleness, count in now.items() if count != self.seen.get(staleness, 0)]
        self.seen = now
        return grown[0] if len(grown) == 1 else -1  # -1: not one step since the last call (never expected)

    def histogram(self) -> collections.Counter:
        """{staleness: steps} of this rank since the start of the run (before a resume too)."""
        return self.earlier + collections.Counter(self.read_histogram())

    def nonfinite_gradient(self, step, name, policy, optimizer, say):
        """This rank's gradient of `step` is not finite: zeros are pushed in its place; with "stop", the
        first is remembered until the ranks meet (`at_flush`), and they all stop there."""
        optimizer.zero_grad()
        optimizer.step()
        if policy != "stop":
            say(f"distrain.train: step {step}: non-finite gradient (first in {name} on rank {self.rank}); its "
                "gradient is left out of the servers' update")
        elif self.found is None:
            self.found = (step, self.names.index(name))

    def at_flush(self, comm, records, logged):
        """What the ranks tell each other where they meet to average losses (every rank calls it: one allgather).

        Returns ({step: {"staleness_mean", "staleness_max"}} for the records `logged(record)` keeps,
        over every rank's steps since the previous logged one; and None, or the message of the
        first non-finite gradient a rank found with nonfinite = "stop", on every rank alike).
        """
        found = self.found or (0, -1)
        mine = numpy.array([record.staleness for record in records] + list(found), dtype=numpy.float64)
        every = comm.allgather(mine) if comm.size > 1 else mine[None]
        values = {}
        for index, record in enumerate(records):
            self.window.extend(every[:, index].tolist())
            if logged(record):
                values[record.step] = {"staleness_mean": sum(self.window) / len(self.window),
                                       "staleness_max": int(max(self.window))}
                self.window = []
        stops = sorted((int(step), rank, int(parameter)) for rank, (step, parameter) in enumerate(every[:, -2:])
                       if step > 0)
        if not stops:
            return values, None
        step, rank, parameter = stops[0]
        later = "" if step == records[-1].step else (
            f", found by every rank at step {records[-1].step}, where the asynchronous ranks next met (until then "
            f"rank {rank}'s non-finite gradients were left out of the servers' updates)")
        return values, f"step {step}: non-finite gradient (first in {self.names[parameter]} on rank {rank}){later}"

    def write_histograms(self, comm, metrics, step, epoch):
        """Every rank's histogram to rank 0, a line (and a TensorBoard histogram) per rank there; all ranks call it."""
        mine = counts_list(self.histogram())
        every = comm.allgather_object(mine) if comm.size > 1 else [mine]
        if metrics is None:
            return
        for rank, counts in enumerate(every):
            steps, mean, largest = summary(counts)
            metrics.histogram("staleness", step, counts, tag=f"staleness/rank_{rank}", epoch=epoch, rank=rank,
                              steps=steps, mean=mean, max=largest)
        metrics.flush()

    def per_rank_numbers(self):
        """[mean, max] of this rank's staleness since the start, for the summary table."""
        _, mean, largest = summary(counts_list(self.histogram()))
        return [mean, largest]

    def resumed(self, optimizer, state, world):
        """After the optimizer loaded the checkpoint: this rank's staleness counts up to it (same world size only)
        and the warning the resume owes the user (resume_warning), or None."""
        saved = state.get("asynchronous")
        if saved is not None and state["world_size"] == world:
            self.earlier = collections.Counter(dict(enumerate(saved["staleness_counts"][self.rank])))
        return resume_warning(optimizer, state["step"], saved is not None, True)


def counts_list(histogram) -> list:
    """{staleness: steps} as [steps of staleness 0, of 1, ...] up to the largest seen."""
    if not histogram:
        return []
    counts = [0] * (max(histogram) + 1)
    for staleness, steps in histogram.items():
        counts[staleness] = steps
    return counts


def summary(counts):
    """(steps, mean staleness, largest staleness) of a counts list; the mean is nan without steps."""
    steps = sum(counts)
    if not steps:
        return 0, math.nan, 0
    mean = sum(staleness * count for staleness, count in enumerate(counts)) / steps
    return steps, mean, max(staleness for staleness, count in enumerate(counts) if count)


def check_config(config, world):
    """ConfigError, before any rank starts, for what asynchronous training cannot do ($DISTRAIN_PS_MODE: the
    launcher's --ps-mode)."""
    from ..comm.ps import modes
    from .config import ConfigError

    if world > 1 and config["gradient_compression"] != "none" and modes.ps_mode() == "async":
        raise ConfigError(f"gradient_compression = \"{config['gradient_compression']}\" compresses the gradients "
                          "that synchronous training averages; asynchronous training (--ps-mode async) pushes them "
                          "to the servers in the parameters' dtype: set gradient_compression = \"none\"")


def optimizer_keeps_state(optimizer) -> bool:
    """Whether the optimizer has state a parameter server would hold (SGD without momentum has none)."""
    return bool(optimizer.counts_steps or any(optimizer._init_state(group) for group in optimizer.param_groups))


def resume_warning(optimizer, step, saved_asynchronous, asynchronous):
    """The warning a resume owes the user when the optimizer's state is lost on the way, else None (module doc)."""
    if not (saved_asynchronous or asynchronous) or not optimizer_keeps_state(optimizer):
        return None
    name = type(optimizer).__name__
    if saved_asynchronous:
        why = (f"the checkpoint of step {step} comes from asynchronous parameter-server training, whose optimizer "
               f"({name}) kept its state on the parameter servers, so the checkpoint does not hold it")
    else:
        why = (f"asynchronous parameter-server training runs the optimizer ({name}) on the servers, which cannot take "
               f"the state the checkpoint of step {step} holds")
    return (f"distrain.train: warning: --resume: {why}. The run goes on from step {step}'s parameters, learning-rate "
            "schedule and data position with the optimizer's state started afresh (as at step 0), so it is not the "
            "run an uninterrupted one would have been. To resume exactly, train synchronously (without --ps-mode "
            "async); asynchronously, optimizer = \"sgd\" with momentum = 0 has no state to lose")
