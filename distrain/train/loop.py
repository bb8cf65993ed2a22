"""The trainer: one configuration in, a trained model, its metrics, checkpoints and plots out.

Every rank runs the same loop; gradients are averaged over ranks by DistributedDataParallel
during backward. What every rank holds is identical after each step (parameters, optimizer
state, the averaged gradients), so every decision taken from it (skip a non-finite step,
stop early, the end) is the same on every rank without another message; evaluation
results are summed over ranks with one allreduce.

NOTE [ Exact resume ]
A step's result depends on the parameters and optimizer state, the batch (which samples,
and any random numbers drawn while loading them), and the random numbers the step draws
(dropout). A checkpoint after step s holds all of it: state_dicts, the position (epoch,
and the data loader's own state mid-epoch: its sampler's order and how many batches were
taken, the epoch's base seed from which every worker's seeds derive), and each rank's
generators. Each epoch's loader seed is a function of (seed, epoch), not a draw from a
running generator, so an epoch begun after a resume is the epoch the uninterrupted run
began. metrics.jsonl is cut back to step s on resume and written again from there: with
the same world size the resumed file equals the uninterrupted one's losses bit for bit
(tests/train/test_resume.py kills runs with SIGKILL, also during a checkpoint write).
With a different world size the run continues from the same global position in the
epoch's sample order (DistributedSampler.load_state_dict): the rest of the epoch is split
over the new ranks (its tail dropped where it does not fill a batch on every rank), and an
`epochs` run is recounted in the new world's steps so that it still ends after its epochs.
Asynchronous parameter-server training keeps its optimizer state on the servers, out of the
checkpoint's reach, and does not repeat exactly with K >= 1: asynchronous.py says what a
resume does there.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time

import numpy

from dataclasses import dataclass

from ..data import DataLoader, DistributedSampler, Subset
from ..engine import nn
from ..engine.autograd import no_grad
from ..engine.random import Generator, manual_seed
from . import asynchronous, checkpoints, datasets, resume
from .asynchronous import AsynchronousTraining, counts_list
from .config import ConfigError, numbered_run_dir, to_toml
from .early_stopping import EarlyStopping
from .model import create_model, training_device
from .nonfinite import GradientCheck, NonFiniteError, first_nonfinite
from .optimization import build_optimizer, build_scheduler

METRICS_FLUSH_STEPS = 50  # losses are averaged over ranks in batches of up to this many steps (one allreduce)
EVAL_BATCH_FACTOR = 4  # evaluation batches are this many training batches (no gradients to keep)


@dataclass
class StepRecord:
    """One optimizer step's numbers, kept until its loss is averaged over ranks and written."""

    step: int
    epoch: int
    loss: object  # a 0-d array (NumPy or CuPy): read (a device sync on a GPU) only when written
    lr: float
    samples: int  # over all ranks
    seconds: float
    data_seconds: float
    comm_seconds: float
    staleness: int = -1  # asynchronous parameter-server training: this rank's gradient's (asynchronous.py)


class Trainer:
    """Trains `config` (a resolved dict from config.load) on the communicator `comm`'s ranks."""

    def __init__(self, config, rank, world, *, resume=False, timeline=None, out=None):
        """`timeline`: None, or the path of a Chrome-trace timeline ("" for run_dir/timeline.json)."""
        if not config["run_dir"]:  # a new runs/N (or the newest, to resume); ranks agree on rank 0's in run()
            config = {**config, "run_dir": numbered_run_dir(resume)}
            self.run_dir_chosen_here = True
        self.config = config
        self.comm = None
        self.rank, self.world = rank, world
        self.resume = resume
        self.timeline_path = timeline
        self.timeline = None
        self.out = out or sys.stdout
        self.run_dir = config["run_dir"]

    # ---------------------------------------------------------------- set-up
    def _check_run_dir(self):
        if os.path.exists(self.run_dir) and not os.path.isdir(self.run_dir):
            raise ConfigError(f"run_dir = {self.run_dir!r} is a file; give a directory")
        if self.rank == 0:  # only rank 0 makes it: a rank that made runs/N would push the next rank to runs/N+1
            try:
                os.makedirs(self.run_dir, exist_ok=True)
            except OSError as error:
                raise ConfigError(f"run_dir = {self.run_dir!r}: cannot create it ({error.strerror})") from None
            if not os.access(self.run_dir, os.W_OK | os.X_OK):
                raise ConfigError(f"run_dir = {self.run_dir!r}: not writable")
        found = checkpoints.existing(self.run_dir)
        if found and not self.resume:
            raise ConfigError(f"run_dir = {self.run_dir!r} holds another run's checkpoints (up to step {found[0][0]}); "
                              "pass --resume to continue it, or set run_dir to a new directory")
        if self.resume and not found:
            raise ConfigError(f"--resume: run_dir = {self.run_dir!r} has no checkpoint to resume from "
                              f"({checkpoints.directory(self.run_dir)} is empty or missing)")

    def prepare(self):
        """Everything that needs no other rank: the checks of run_dir, the data, the model, the checkpoint.

        The launcher calls it before starting any rank, so that a mistake in the
        configuration is one line and exit code 2 rather than N ranks failing.
        """
        self._check_run_dir()
        config = self.config
        manual_seed(config["seed"])
        numpy.random.seed(config["seed"] % 2 ** 32)
        self.splits = splits = datasets.build(config)
        per_step = config["batch_size"] * self.world
        if per_step > len(splits.train):
            raise ConfigError(f"batch_size = {config['batch_size']} on {self.world} rank(s) needs {per_step} samples "
                              f"per step, but {splits.name} has {len(splits.train)} training samples; "
                              f"use batch_size <= {len(splits.train) // self.world}")
        batches = len(splits.train) // self.world // config["batch_size"]
        if batches < config["accumulate"]:
            raise ConfigError(f"accumulate = {config['accumulate']}: an epoch has only {batches} batches per rank; "
                              f"use accumulate <= {batches}")
        training_device(config["device"])  # device = "cuda" without a GPU: refused here, before any rank starts
        asynchronous.check_config(config, self.world)
        self.model = create_model(config, splits.input_shape, splits.classes)
        self.state = checkpoints.read_latest(self.run_dir, warn=self._warn) if self.resume else None
        if self.resume and self.state is None:
            raise ConfigError(f"--resume: no checkpoint in {checkpoints.directory(self.run_dir)} reads back whole")
        if self.state is not None:
            resume.check_unchanged(self.state["config"], config)
            self.model.load_state_dict(self.state["model"])
        return self

    def _build(self):
        config, splits = self.config, self.splits
        self.device = training_device(config["device"])
        if self.device != "cpu":
            self.model.to(self.device)  # before the optimizer packs the parameters (README: Flat buffers)
        self.ddp = None
        if self.world > 1:
            from ..parallel import DistributedDataParallel

            compression = None if config["gradient_compression"] == "none" else config["gradient_compression"]
            self.ddp = DistributedDataParallel(self.model, comm=self.comm, bucket_cap_mb=config["bucket_cap_mb"],
                                               gradient_compression=compression)
        self.forward = self.ddp if self.ddp is not None else self.model
        self.optimizer = build_optimizer(config, self.model.parameters(), self.world)
        self.named_parameters = list(self.model.named_parameters())
        # asynchronous parameter-server training only, else None (asynchronous.py)
        self.asynchronous = AsynchronousTraining.of(self.ddp, self.comm, [name for name, _ in self.named_parameters])
        self.gradients_finite = GradientCheck(self.named_parameters).check  # after the optimizer packed them
        self.sampler = DistributedSampler(splits.train, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=config["seed"], drop_last=True)
        self.loader_generator = Generator(seed=0)
        self.loader = DataLoader(splits.train, batch_size=config["batch_size"], sampler=self.sampler,
                                 num_workers=config["workers"], persistent_workers=config["workers"] > 0,
                                 generator=self.loader_generator, drop_last=True, device=self.device)
        self.batches_per_epoch = len(self.loader) // config["accumulate"] * config["accumulate"]
        self.steps_per_epoch = self.batches_per_epoch // config["accumulate"]
        self.total_steps = config["steps"] or config["epochs"] * self.steps_per_epoch
        self.scheduler = build_scheduler(config, self.optimizer, self.total_steps)
        self.pass_batches = self.batches_per_epoch  # batches in the current pass (fewer after a world-size change)
        self.early_stopping = EarlyStopping(config["early_stop.metric"], config["early_stop.patience"],
                                            config["early_stop.min_delta"])
        held = Subset(splits.eval, range(self.rank, len(splits.eval), self.world))  # every sample once, no padding
        self.eval_loader = DataLoader(held, batch_size=config["batch_size"] * EVAL_BATCH_FACTOR, device=self.device)

    # ---------------------------------------------------------------- the loop
    def run(self, comm) -> dict:
        """Train to the configured end (or an early stop) after prepare(); returns the summary's numbers."""
        from .metrics import MetricsLog
        from .progress import Progress

        self.comm = comm
        if self.run_dir_chosen_here and self.world > 1:  # ranks started apart may have seen different runs/
            self.run_dir = self.config["run_dir"] = comm.allgather_object(self.run_dir)[0]
        self._build()
        self.step, self.epoch, self.taken, self.elapsed_before = 0, 0, 0, 0.0
        self.best_accuracy = None
        resumed_pass = False
        if self.state is not None:
            warning = resume.restore(self, self.state)
            if warning is not None:  # asynchronous training lost the optimizer's state on the way (asynchronous.py)
                self._warn(warning)
            resumed_pass = self.resumed_pass
        self.state = None  # the checkpoint's arrays are in the model and optimizer now
        if self.step >= self.total_steps or self.early_stopping.stopped:
            how = "stopped early" if self.early_stopping.stopped else "finished"
            self.say(f"{self.run_dir} {how} at step {self.step} already; nothing to do (start a new run_dir, or "
                     "raise steps or epochs to train on)")
            return {"ranks": self.world, "steps": self.step, "accuracy": self.best_accuracy, "finished": True}
        leader = self.rank == 0
        if leader:
            os.makedirs(self.run_dir, exist_ok=True)
            _write_text(os.path.join(self.run_dir, "config.toml"), to_toml(self.config))
        if self.world > 1:
            self.comm.barrier()  # run_dir exists for every rank (the timeline's parts go there)
        self._start_timeline()
        self.progress = Progress(self.total_steps, initial_step=self.step, enabled=leader,
                                 print_every=self.config["print_every"])
        self.metrics = MetricsLog(self.run_dir, resume_step=self.step if self.resume else None,
                                  tensorboard=self.config["tensorboard"], say=self.progress.write,
                                  tensorboard_every=self.config["tensorboard_every"]) if leader else None
        self.pending = []  # StepRecords whose losses are not averaged and written yet
        self.samples_seen = 0
        self.data_seconds = 0.0
        self.comm_seconds = 0.0  # waiting for gradient reductions (and buffer broadcasts) inside steps
        self.step_seconds = 0.0  # inside training steps (no evaluation, no checkpoints)
        self.last_loss = float("nan")
        self.last_rate = 0.0
        self.accuracy = None
        self.eval_loss = None
        if leader:
            self.say(f"training {self.config['model']} on {self.splits.name} ({len(self.splits.train)} samples, "
                     f"{len(self.splits.eval)} held out) for {self.total_steps} steps on {self.world} rank(s), "
                     f"batch {self.config['batch_size']} per rank; writing to {self.run_dir}")
        started = self._started = time.perf_counter()  # checkpoints record the time trained since
        try:
            while self.step < self.total_steps and not self.early_stopping.stopped:
                if not resumed_pass:
                    self.sampler.set_epoch(self.epoch)
                    self.loader_generator.manual_seed(resume.loader_seed(self.config["seed"], self.epoch))
                    self.taken = 0
                resumed_pass = False
                self._train_epoch()
        finally:
            self.progress.close()
        self.train_seconds = time.perf_counter() - started
        self._flush_losses()
        self._pull_parameters()  # asynchronous: the model every rank ends with is the servers' latest
        if self.accuracy is None or self.last_eval_step != self.step:
            self._evaluate()
        if self.last_checkpoint_step != self.step:
            self._checkpoint()
        results = self._finish()
        self._finish_timeline()
        return results

    def _start_timeline(self):
        """The timeline, if asked for: $DISTRAIN_TIMELINE's (dist.init started it), else one at the configured path."""
        from .. import timeline as timelines

        self.timeline = timelines.current()
        path = self.timeline_path if self.timeline_path is not None else (self.config["timeline"] or None)
        if self.timeline is None and path is not None:
            path = path or os.path.join(self.run_dir, "timeline.json")
            self.timeline = timelines.Timeline(path, self.rank, self.world)
            timelines.activate(self.timeline)
            self.own_timeline = True

    def _finish_timeline(self):
        """Close the timeline this trainer started; rank 0 merges every rank's part once all have closed theirs."""
        if not self.own_timeline:
            return
        from .. import timeline as timelines

        self.timeline.close()
        if self.world > 1:
            self.comm.barrier()
        if self.rank == 0:
            timelines.merge(self.timeline.path, self.world)
            self.say(f"timeline: {self.timeline.path} (open it in ui.perfetto.dev or chrome://tracing)")

    def _train_epoch(self):
        config = self.config
        accumulate = config["accumulate"]
        batches = iter(self.loader)
        span = self._span
        while self.taken < self.pass_batches and self.step < self.total_steps:
            step_started = time.perf_counter()
            waited_before = self.ddp.communication_wait_seconds if self.ddp is not None else 0.0
            loss_sum = None  # an array, not a Tensor: 50 Tensors freed at each flush cost 7 us each
            data_seconds = 0.0
            for micro in range(accumulate):
                waited = time.perf_counter()
                with span("data wait", "data"):
                    inputs, labels = next(batches)
                data_seconds += time.perf_counter() - waited
                last = micro == accumulate - 1
                with self._no_sync(not last):
                    with span("forward", "forward"):
                        loss = nn.functional.cross_entropy(self.forward(inputs), labels)
                        scaled = loss / accumulate if accumulate > 1 else loss
                    with span("backward", "backward"):
                        scaled.backward()
                loss_sum = loss._data if loss_sum is None else loss_sum + loss._data
                self.taken += 1
            with span("optimizer step", "optimizer"):
                if config["clip_grad_norm"] > 0:
                    norm = nn.utils.clip_grad_norm_(self.model.parameters(), config["clip_grad_norm"]).item()
                    finite = math.isfinite(norm)
                else:
                    finite = self.gradients_finite()
                lr = self.optimizer.param_groups[0]["lr"]
                if finite:
                    self.optimizer.step()
                else:
                    self._nonfinite()
                self.optimizer.zero_grad()
                self.scheduler.step()
            staleness = self.asynchronous.step_taken() if self.asynchronous is not None else -1
            self.step += 1
            samples = config["batch_size"] * accumulate * self.world
            self.samples_seen += samples // self.world
            self.data_seconds += data_seconds
            seconds = time.perf_counter() - step_started
            comm_seconds = self.ddp.communication_wait_seconds - waited_before if self.ddp is not None else 0.0
            self.comm_seconds += comm_seconds
            self.step_seconds += seconds
            mean_loss = loss_sum / accumulate if accumulate > 1 else loss_sum
            self.pending.append(StepRecord(self.step, self.epoch, mean_loss, lr, samples, seconds, data_seconds,
                                           comm_seconds, staleness))
            if len(self.pending) >= METRICS_FLUSH_STEPS or self.step % config["print_every"] == 0 or self.step == 1:
                self._flush_losses()
            self.progress.update(self.step, self.epoch, self.last_loss, self.last_rate)
            end_of_epoch = self.taken >= self.pass_batches
            if end_of_epoch:
                self.epoch += 1
                self.taken = 0
                self.pass_batches = self.batches_per_epoch
            every = config["eval_every"]
            if (every and self.step % every == 0) or (not every and end_of_epoch):
                self._flush_losses()
                self._evaluate()
                self._early_stopping()
            every = config["checkpoint_every"]
            if (every and self.step % every == 0) or (not every and end_of_epoch) or self.early_stopping.stopped:
                self._checkpoint()
            if end_of_epoch or self.early_stopping.stopped:
                return

    run_dir_chosen_here = False
    own_timeline = False
    last_eval_step = -1
    last_checkpoint_step = -1
    pulled_step = -1

    def _no_sync(self, skip):
        return self.ddp.no_sync() if skip and self.ddp is not None else contextlib.nullcontext()

    def _span(self, name, category):
        return self.timeline.span(name, category) if self.timeline is not None else _NO_SPAN

    def _nonfinite(self):
        name = first_nonfinite(self.named_parameters)
        if self.asynchronous is not None:  # this rank's own gradient: the ranks stop together later (asynchronous.py)
            say = self.progress.write if self.rank == 0 else lambda line: print(line, file=sys.stderr, flush=True)
            return self.asynchronous.nonfinite_gradient(self.step + 1, name, self.config["nonfinite"], self.optimizer,
                                                        say)
        message = f"step {self.step + 1}: non-finite gradient (first in {name})"
        if self.config["nonfinite"] == "stop":
            self._stop_for_nonfinite(message)
        if self.rank == 0:
            self.progress.write(f"distrain.train: {message}; step skipped")

    def _stop_for_nonfinite(self, message):
        raise NonFiniteError(f"{message}; the run stops (nonfinite = \"skip\" skips such steps instead; the last "
                             "checkpoint is in " + checkpoints.directory(self.run_dir) + ")")

    # ---------------------------------------------------------------- metrics, evaluation, checkpoints
    def _flush_losses(self):
        """Average the pending steps' losses over ranks (one allreduce) and write their metrics lines."""
        if not self.pending:
            return
        losses = numpy.array([float(record.loss) for record in self.pending], dtype=numpy.float64)
        if self.world > 1:
            self.comm.allreduce(losses, "sum")
            losses /= self.world
        samples = sum(record.samples for record in self.pending)
        seconds = sum(record.seconds for record in self.pending)
        self.last_loss, self.last_rate = float(losses[-1]), samples / max(seconds, 1e-9)
        logged = lambda record: record.step % self.config["log_every"] == 0 or record.step == self.total_steps
        staleness, stop = {}, None
        if self.asynchronous is not None:
            staleness, stop = self.asynchronous.at_flush(self.comm, self.pending, logged)
        if self.metrics is not None:
            for record, loss in zip(self.pending, losses.tolist()):
                if logged(record):
                    self.metrics.train(record.step, record.epoch, loss, record.lr,
                                       record.samples / max(record.seconds, 1e-9), data_wait_s=record.data_seconds,
                                       comm_s=record.comm_seconds, step_s=record.seconds,
                                       **staleness.get(record.step, {}))
            self.metrics.flush()
        self.pending = []
        if stop is not None:
            self._stop_for_nonfinite(stop)

    def _pull_parameters(self):
        """Asynchronous: every rank takes the servers' latest parameters, once per step (asynchronous.py)."""
        if self.asynchronous is not None and self.pulled_step != self.step:
            with self._span("pull parameters", "comm"):
                self.ddp.pull_parameters()
            self.pulled_step = self.step

    def _evaluate(self):
        self._pull_parameters()
        with self._span("evaluate", "eval"):
            self.model.eval()
            totals = numpy.zeros(3)  # correct, count, summed loss
            with no_grad():
                for inputs, labels in self.eval_loader:
                    logits = self.model(inputs)
                    totals[0] += float((logits.argmax(dim=1) == labels).sum().item())
                    totals[1] += labels.shape[0]
                    totals[2] += float(nn.functional.cross_entropy(logits, labels, reduction="sum").item())
            self.model.train()
            if self.world > 1:
                self.comm.allreduce(totals, "sum")
        self.accuracy, self.eval_loss = totals[0] / totals[1], totals[2] / totals[1]
        self.best_accuracy = self.accuracy if self.best_accuracy is None else max(self.best_accuracy, self.accuracy)
        self.last_eval_step = self.step
        if self.metrics is not None:
            self.metrics.eval(self.step, self.epoch, self.accuracy, loss=self.eval_loss)
            self.metrics.flush()
            self.progress.write(f"step {self.step}: accuracy {self.accuracy:.4f}, held-out loss {self.eval_loss:.4f}")
        if self.asynchronous is not None:
            self.asynchronous.write_histograms(self.comm, self.metrics, self.step, self.epoch)

    def _early_stopping(self):
        """Rank 0's verdict, sent to all: the evaluation sums of an allreduce may differ in their last bits."""
        stop = numpy.array([float(self.early_stopping.update(self.accuracy, self.eval_loss))])
        if self.world > 1 and self.early_stopping.patience:
            self.comm.broadcast(stop, root=0)
            self.early_stopping.stopped = bool(stop[0])
        if self.early_stopping.stopped and self.rank == 0:
            self.progress.write(f"step {self.step}: no improvement of {self.config['early_stop.metric']} in "
                                f"{self.early_stopping.patience} evaluations; stopping early")

    def _checkpoint(self):
        """Every rank contributes its generators and loader position; rank 0 writes (checkpoints.py)."""
        self._flush_losses()
        self._pull_parameters()
        with self._span("checkpoint", "checkpoint"):
            mine = [checkpoints.rng_state(), json.dumps(self.loader.state_dict()) if self.taken else ""]
            if self.asynchronous is not None:
                mine.append(counts_list(self.asynchronous.histogram()))
            gathered = self.comm.allgather_object(mine) if self.world > 1 else [mine]
            if self.rank == 0:
                state = {
                    "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "step": self.step, "epoch": self.epoch,
                    "batches_taken": self.taken, "world_size": self.world,
                    "loader": [entry[1] for entry in gathered], "rng": [entry[0] for entry in gathered],
                    "early_stop": self.early_stopping.state_dict(), "best_accuracy": self.best_accuracy,
                    "elapsed": self.elapsed_before + time.perf_counter() - self._started,
                    "config": to_toml(self.config),
                }
                if self.asynchronous is not None:  # marks the checkpoint as asynchronous training's too
                    state["asynchronous"] = {"staleness_counts": [entry[2] for entry in gathered]}
                self.metrics.sync()  # the lines up to this step survive whatever happens next
                checkpoints.write(self.run_dir, self.step, state, self.config["keep_checkpoints"])
            if self.world > 1:  # the others wait here, not inside their next step (it would look like compute)
                self.comm.barrier()
        self.last_checkpoint_step = self.step


    def _finish(self) -> dict:
        mine = [self.samples_seen / max(self.step_seconds, 1e-9), self.step_seconds - self.comm_seconds,
                self.comm_seconds, self.data_seconds]
        if self.asynchronous is not None:
            mine += self.asynchronous.per_rank_numbers()
        per_rank = [mine] if self.world == 1 else self.comm.allgather_object(mine)
        results = {
            "ranks": self.world, "accuracy": self.accuracy, "best_accuracy": self.best_accuracy,
            "eval_loss": self.eval_loss, "steps": self.step, "epochs": self.epoch, "seconds": self.train_seconds,
            "samples_per_s_per_rank": [entry[0] for entry in per_rank],
            "compute_s_per_rank": [entry[1] for entry in per_rank],
            "comm_wait_s_per_rank": [entry[2] for entry in per_rank],
            "data_wait_s_per_rank": [entry[3] for entry in per_rank],
        }
        if self.asynchronous is not None:
            results.update(staleness_bound=self.asynchronous.bound,
                           staleness_mean_per_rank=[entry[4] for entry in per_rank],
                           staleness_max_per_rank=[entry[5] for entry in per_rank])
        if self.rank == 0:
            from .report import plot_curves, summary_table
            from .metrics import read_metrics

            self.metrics.close()
            print(summary_table(results), file=self.out, flush=True)
            if self.config["plot"]:
                if plot_curves(read_metrics(self.run_dir), os.path.join(self.run_dir, "curves.png")):
                    self.say(f"curves: {os.path.join(self.run_dir, 'curves.png')}")
                else:
                    self.say("no curves.png: matplotlib is not installed (pip install 'distrain[viz]')")
        return results

    def say(self, message):
        if self.rank == 0:
            print(f"distrain.train: {message}", file=self.out, flush=True)

    def _warn(self, message):
        if self.rank == 0:
            print(message, file=sys.stderr, flush=True)


_NO_SPAN = contextlib.nullcontext()


def _write_text(path, text):
    from ..durable import replace_file

    replace_file(path, lambda file: file.write(text.encode()))
