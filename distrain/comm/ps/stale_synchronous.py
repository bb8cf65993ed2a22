"""Asynchronous training on a parameter server: the server holds the parameters and runs the optimizer.

NOTE [ Stale synchronous parallel ]
In asynchronous mode (`--ps-mode async --staleness K`) a rank no longer averages gradients
with the others and steps its own optimizer; it pushes its gradient to the servers and
pulls fresh parameters back, and the servers run the optimizer. Each server holds its
shards of the model (the same slices a synchronous allreduce would give it, NOTE
[ Partitions on several servers ] in partitions.py), one `ServedShard` each, with the
optimizer's state for those elements.

- A rank's clock is how many gradients it has pushed. A rank may run at most K steps ahead
  of the slowest rank: the answer to its push (its fresh parameters) is held back until
  its clock is at most K above every other rank's (stale synchronous parallel, Ho et al.
  2013). K=inf never holds an answer back.
- K >= 1: each gradient is applied as it arrives, one optimizer step per gradient, on the
  gradient divided by the number of ranks (its share of the mean that synchronous training
  steps on), so that SGD's movement per round of N gradients matches synchronous
  training's. Its staleness is the number of updates the server applied between the
  version the rank computed it on (the one in its last answer) and its own; with N ranks in
  step that is about N-1. With damping on, the step's learning rate is multiplied by
  min(1, N / (staleness + 1)): only gradients staler than one round of the others' updates
  are damped, in proportion to how many rounds (Zhang et al. 2016 divide by the staleness
  itself, counted in rounds of their protocol).
- K = 0: every rank waits for every other at each step, so a step is a round of all N
  gradients, and the server applies it as synchronous training does: the gradients summed
  in rank order (rank 0 + rank 1 + ...), divided by N, one optimizer step. The sum and the
  division are the synchronous allreduce's (server.py, client.py) and the optimizer is the
  same distrain class, so the parameters are bit for bit those of synchronous training.
- The parameters a rank starts from are rank 0's (what DistributedDataParallel broadcast
  at construction). A rank that registers later, or again, gets the current parameters
  and its clock, and goes on from there.
- Every answer carries a copy of the parameters taken at one version, shared by all the
  answers of that version: ZeroMQ sends without copying, and the next update must not
  change bytes that are still on their way.
- A rank held back longer than its timeout is answered with an error naming the ranks
  that are behind and how far: a slow rank is a straggler, a silent one has died or hangs.
"""
from __future__ import annotations

import collections
import time

import numpy

from . import protocol, served_optimizer
from .protocol import ProtocolError

INFINITE = -1  # the staleness a request names for K = inf
MAX_SHARDS = 4096  # shards one server may hold (a shard is a partition of one model's flat buffer)


class ServedShard:
    """One slice of one model's parameters, with its optimizer, served to `world_size` ranks.

    `reply(identity, header, payload)` answers a rank (the server's). `description` is what the
    first rank's serve request said; every rank's must agree.
    """

    def __init__(self, header, world_size, reply):
        self.key = (header["table"], header["shard"])
        self.where = f"served shard {self.key[1]} of model {self.key[0]}"
        self.description = {name: header[name] for name in ("dtype", "shape", "optimizer", "groups", "runs",
                                                             "staleness", "damping")}
        self.dtype = numpy.dtype(header["dtype"])
        if len(header["shape"]) != 1:
            raise ProtocolError(f"{self.where}: a served shard is 1-D, got shape {header['shape']}")
        self.size = header["shape"][0]
        self.staleness = header["staleness"]
        if self.staleness < INFINITE:
            raise ProtocolError(f"{self.where}: staleness must be >= 0 (or -1 for unbounded), got {self.staleness}")
        self.damping = header["damping"]
        self.world_size = world_size
        self.reply = reply
        runs = self._checked_runs(header["runs"], len(header["groups"]) if isinstance(header["groups"], list) else 0)
        from ...engine.flat import FlatParameters
        from ...engine.nn.parameter import Parameter
        from ...engine.tensor import _make

        self.values = numpy.zeros(self.size, self.dtype)
        pieces = [Parameter(_make(numpy.zeros(stop - start, self.dtype))) for start, stop, _ in runs]
        self.flat = FlatParameters(pieces, data=self.values)
        self.optimizer, self.group_numbers = served_optimizer.build(header["optimizer"], header["groups"], runs,
                                                                    pieces.__getitem__)
        self.ready = False  # rank 0's values have arrived
        self.registered = set()
        self.clock = dict.fromkeys(range(world_size), 0)  # rank -> gradients pushed
        self.read_version = {}  # rank -> the version of the parameters it was last sent
        self.version = 0  # optimizer updates applied
        self.waiting = {}  # rank -> (identity, seq, since, op): an answer held back
        self.round = {}  # K = 0: rank -> its gradient's parts, until every rank's is in
        self.staleness_counts = collections.Counter()
        self._snapshot = (None, None)  # (version, copy of the values at it)

    def _checked_runs(self, runs, groups):
        if not isinstance(runs, list) or not 1 <= len(runs) <= served_optimizer.MAX_RUNS:
            raise ProtocolError(f"{self.where}: runs must be a list of 1..{served_optimizer.MAX_RUNS} "
                                "[start, stop, group]")
        expected = 0
        for run in runs:
            if not (isinstance(run, list) and len(run) == 3 and all(type(n) is int for n in run)):
                raise ProtocolError(f"{self.where}: a run must be [start, stop, group], got {run!r:.80}")
            start, stop, group = run
            if start != expected or stop <= start or not 0 <= group < groups:
                raise ProtocolError(f"{self.where}: run {run} does not continue at element {expected} with one of "
                                    f"the {groups} param groups")
            expected = stop
        if expected != self.size:
            raise ProtocolError(f"{self.where}: the runs cover {expected} elements, the shard has {self.size}")
        return [tuple(run) for run in runs]

    # -- requests ---------------------------------------------------------------------------
    def serve(self, header, parts, identity):
        """A rank registers (at its first step, or again after a restart); answered with the parameters."""
        rank = header["rank"]
        mine = {name: header[name] for name in self.description}
        if mine != self.description:
            differing = sorted(name for name in mine if mine[name] != self.description[name])
            raise ProtocolError(f"rank {rank}: {self.where} was served as {_describe(self.description, differing)} "
                                f"but this rank serves it as {_describe(mine, differing)}: every rank must build the "
                                "same model and optimizer")
        if rank in self.waiting:
            raise ProtocolError(f"rank {rank}: {self.where}: a request of this rank is still waiting")
        if parts and protocol.payload_size(parts) and not self.ready:
            protocol.copy_payload(header, parts, self.values)
            self.ready = True
        self.registered.add(rank)
        self.waiting[rank] = (identity, header["seq"], time.monotonic(), "serve")
        self.release()

    def push(self, header, parts, identity):
        """A rank's gradient: applied now (K >= 1) or with the round's (K = 0); answered when the bound allows."""
        rank = header["rank"]
        if rank not in self.registered:
            raise ProtocolError(f"rank {rank}: pushed to {self.where} before serving it")
        if rank in self.waiting:
            raise ProtocolError(f"rank {rank}: {self.where}: pushed again before its last push was answered")
        if header["dtype"] != self.description["dtype"] or header["shape"] != self.description["shape"]:
            raise ProtocolError(f"rank {rank}: pushed {header['dtype']} {header['shape']} to {self.where}, which "
                                f"holds {self.description['dtype']} {self.description['shape']}")
        if header["clock"] != self.clock[rank]:
            raise ProtocolError(f"rank {rank}: pushed its gradient number {header['clock']} to {self.where}, which "
                                f"has {self.clock[rank]} from it: a lost or repeated push")
        arrays = protocol.payload_arrays(header, parts)
        served_optimizer.set_hyperparameters(self.optimizer, self.group_numbers, header["groups"],
                                             f"rank {rank}: push to {self.where}")
        self.clock[rank] += 1
        if self.staleness == 0:
            self.waiting[rank] = (identity, header["seq"], time.monotonic(), "push")  # until its round is complete
            self.round[rank] = arrays
            if len(self.round) == len(self.clock):
                self._apply_round()
        else:
            staleness = self.version - self.read_version[rank]
            self._apply(arrays, staleness)
            self.staleness_counts[staleness] += 1
            self.waiting[rank] = (identity, header["seq"], time.monotonic(), ("push", staleness))
        self.release()

    # -- updates ----------------------------------------------------------------------------
    def _apply_round(self):
        """K = 0: rank 0 + rank 1 + ... in rank order, divided by N, one step (NOTE [ Stale synchronous parallel ])."""
        wide = numpy.float32 if self.dtype == numpy.float16 else self.dtype
        total = numpy.empty(self.size, wide)
        for rank in sorted(self.round):
            offset = 0
            for part in self.round[rank]:
                window = total[offset:offset + part.size]
                if rank == min(self.round):
                    window[...] = part
                else:
                    numpy.add(window, part, out=window, casting="unsafe")
                offset += part.size
        self.round.clear()
        total = total.astype(self.dtype, copy=False)  # as the allreduce's answer: rounded once, then divided
        numpy.divide(total, len(self.clock), out=total)
        self._step(total, 1.0)
        for rank, (identity, seq, since, op) in self.waiting.items():
            if op == "push":
                self.waiting[rank] = (identity, seq, since, ("push", 0))
                self.staleness_counts[0] += 1

    def _apply(self, arrays, staleness):
        """K >= 1: one step on this gradient's share of the mean (divided by N), damped if asked."""
        gradient = numpy.empty(self.size, self.dtype)
        offset = 0
        for part in arrays:
            gradient[offset:offset + part.size] = part
            offset += part.size
        numpy.divide(gradient, len(self.clock), out=gradient)
        damping = min(1.0, len(self.clock) / (staleness + 1)) if self.damping else 1.0
        self._step(gradient, damping)

    def _step(self, gradient, damping):
        self.flat.grad[...] = gradient
        for param in self.flat.parameters:
            param._grad = param._flat_grad
        groups = self.optimizer.param_groups
        saved = [group["lr"] for group in groups]
        if damping != 1.0:
            for group in groups:
                group["lr"] = group["lr"] * damping
        try:
            self.optimizer.step()
        finally:
            for group, lr in zip(groups, saved):
                group["lr"] = lr
        self.version += 1

    # -- answers ----------------------------------------------------------------------------
    def release(self):
        """Answer every held-back rank that the bound now lets go (all of them once rank 0's values are in)."""
        if not self.ready or not self.waiting:
            return
        slowest = min(self.clock.values())
        for rank in sorted(self.waiting):
            identity, seq, since, op = self.waiting[rank]
            if op == "push" or (op != "serve" and self.staleness != INFINITE
                                and self.clock[rank] - slowest > self.staleness):
                continue  # K = 0: its round is not complete; K >= 1: too far ahead
            del self.waiting[rank]
            header = {"op": "serve" if op == "serve" else "push", "seq": seq, "version": self.version,
                      "clock": self.clock[rank]}
            if op != "serve":
                header["staleness"] = op[1]
            self.read_version[rank] = self.version
            self.reply(identity, header, self._values_now())

    def _values_now(self):
        """The values at this version, copied once for every answer of it (the module docstring says why)."""
        version, values = self._snapshot
        if version != self.version:
            values = self.values.copy()
            self._snapshot = (self.version, values)
        return values

    def expire(self, now, timeout_of):
        """Answer with an error every rank held back longer than its timeout, naming who it waits for."""
        for rank, (identity, seq, since, op) in list(self.waiting.items()):
            limit = timeout_of(rank)
            if now - since <= limit:
                continue
            del self.waiting[rank]
            slowest = min(self.clock.values())
            behind = sorted(r for r, clock in self.clock.items() if clock == slowest)
            if not self.ready:
                why = "rank 0 never sent the starting parameters"
            elif self.staleness == 0:
                why = (f"this step needs every rank's gradient, and rank(s) {sorted(set(self.clock) - set(self.round))} "
                       "never pushed theirs")
            else:
                why = (f"this rank is at step {self.clock[rank]}, rank(s) {behind} at step {slowest}, and the bound "
                       f"is {self.staleness} steps")
            self.reply(identity, {"op": "push" if op != "serve" else "serve", "seq": seq, "timed_out": float(limit),
                                  "error": f"{self.where}: rank {rank} waited {limit:g} s: {why}; a rank crashed, "
                                           "hangs, or is far slower than the others"})


def _describe(description, names):
    return ", ".join(f"{name}={description[name]!r:.120}" for name in names)
