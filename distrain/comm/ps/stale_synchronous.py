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
- The start: the servers answer no rank until every rank of the job has registered (when
  DistributedDataParallel wraps its model), and everyone starts from rank 0's parameters,
  as DistributedDataParallel's broadcast makes them in synchronous mode. The optimizer is
  described at the first step (a second serve, naming it): only then can a rank push. After it, the
  ranks that count (for the bound and for K=0's rounds) are the live ones: a rank whose
  connection closes (its process died, or stalled past the heartbeat timeout: server.py)
  is dropped, logged with its rank, and the others go on without waiting for it; its
  gradient already pushed still counts. A rank that registers after the start (restarted
  by the launcher's --max-restarts, or started by hand with the same command and a rank
  number that is free) joins at the slowest live rank's step with the current parameters.
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
OPTIMIZER_FIELDS = ("optimizer", "groups", "runs")  # what a serve says of the optimizer: empty in the first one
MAX_SHARDS = 4096  # shards one server may hold (a shard is a partition of one model's flat buffer)


class ServedShard:
    """One slice of one model's parameters, with its optimizer, served to `world_size` ranks.

    `reply(identity, header, payload)` answers a rank (the server's). `description` is what the
    first rank's serve request said; every rank's must agree.
    """

    def __init__(self, header, world_size, reply, max_bytes=protocol.DEFAULT_MAX_MESSAGE_BYTES):
        self.key = (header["table"], header["shard"])
        self.where = f"served shard {self.key[1]} of model {self.key[0]}"
        self.description = {name: header[name] for name in ("model", "dtype", "shape", "optimizer", "groups", "runs",
                                                             "staleness", "damping")}
        self.dtype = numpy.dtype(header["dtype"])
        if len(header["shape"]) != 1:
            raise ProtocolError(f"{self.where}: a served shard is 1-D, got shape {header['shape']}")
        self.size = header["shape"][0]
        if self.size * self.dtype.itemsize > max_bytes:  # a shard travels whole in one push: no larger than one
            raise ProtocolError(f"{self.where}: {self.size} {self.dtype} elements are more than this server's "
                                f"message limit of {max_bytes} bytes")
        self.staleness = header["staleness"]
        if self.staleness < INFINITE:
            raise ProtocolError(f"{self.where}: staleness must be >= 0 (or -1 for unbounded), got {self.staleness}")
        self.damping = header["damping"]
        self.world_size = world_size
        self.reply = reply
        self.values = numpy.zeros(self.size, self.dtype)
        self.flat = self.optimizer = self.group_numbers = None  # until a rank describes its optimizer
        if header["optimizer"]:
            self._build_optimizer(header)
        self.ready = False  # rank 0's values have arrived
        self.started = False  # every rank of the job has registered once
        self.live = set()  # the ranks registered and not dropped: the bound and the rounds are theirs
        self.resumed = set()  # restored from a checkpoint: the ranks live then that have not registered again
        self.resumed_since = None  # when it was restored (server.py forgets the ranks that do not come back)
        self.clock = {}  # rank -> gradients pushed (a rank that joins late starts at the slowest live rank's)
        self.read_version = {}  # rank -> the version of the parameters it was last sent
        self.version = 0  # optimizer updates applied
        self.waiting = {}  # rank -> (identity, seq, since, op): an answer held back
        self.round = {}  # K = 0: rank -> its gradient's parts, until every rank's is in
        self.staleness_counts = collections.Counter()
        self._snapshot = (None, None)  # (version, copy of the values at it)

    # -- checkpoints (server_checkpoint.py) -------------------------------------------------
    def state(self):
        """What a checkpoint keeps: the description, parameters, optimizer state, clocks and version (not the rounds
        or answers in flight: a restarted server's ranks register again and push again; so a K = 0 round's pushes
        are not counted in their ranks' clocks), and which ranks are live (they take their own clocks back)."""
        optimizer = {} if self.optimizer is None else self.optimizer.state_dict()
        clock = {rank: count - (rank in self.round) for rank, count in self.clock.items()}
        return {"description": self.description, "values": self.values, "optimizer": optimizer,
                "clock": [[rank, count] for rank, count in sorted(clock.items())], "version": self.version,
                "live": sorted(self.live | self.resumed),
                "ready": self.ready, "started": self.started,
                "staleness_counts": [[staleness, count] for staleness, count in sorted(self.staleness_counts.items())]}

    @classmethod
    def restore(cls, key, state, world_size, reply, max_bytes=protocol.DEFAULT_MAX_MESSAGE_BYTES):
        """The shard `state()` gave, served again by a restarted server: a rank live at the checkpoint registers
        again at its own clock there (any other, at the slowest live rank's), and no rank is answered until all of
        those have (or are forgotten: forget_resumed), so that none runs ahead of the others, nor a K = 0 round
        completes without their gradients."""
        header = {"table": key[0], "shard": key[1], **state["description"]}
        shard = cls(header, world_size, reply, max_bytes)
        values = numpy.asarray(state["values"])
        if values.shape != shard.values.shape or values.dtype != shard.values.dtype:
            raise ValueError(f"{shard.where}: the checkpoint's values are {values.dtype} {values.shape}, its "
                             f"description says {shard.values.dtype} {shard.values.shape}")
        shard.values[...] = values
        if shard.optimizer is not None:
            shard.optimizer.load_state_dict(state["optimizer"])
        shard.clock = {int(rank): int(clock) for rank, clock in state["clock"]}
        # the ranks live at the checkpoint; none (every rank had said bye: the whole job is started again with the
        # same checkpoint directory): every rank that ever pushed, so that none trains alone before the others are back
        live = {int(rank) for rank in state.get("live", ())}
        shard.resumed, shard.resumed_since = live or set(shard.clock), time.monotonic()
        shard.version, shard.ready, shard.started = int(state["version"]), bool(state["ready"]), bool(state["started"])
        shard.staleness_counts.update({int(staleness): int(count) for staleness, count in state["staleness_counts"]})
        return shard

    def _build_optimizer(self, header):
        """The optimizer a serve describes, over views of the shard's values (served_optimizer.py)."""
        from ...engine.flat import FlatParameters
        from ...engine.nn.parameter import Parameter
        from ...engine.tensor import _make

        runs = self._checked_runs(header["runs"], len(header["groups"]) if isinstance(header["groups"], list) else 0)
        pieces = [Parameter(_make(numpy.zeros(stop - start, self.dtype))) for start, stop, _ in runs]
        flat = FlatParameters(pieces, data=self.values)
        self.optimizer, self.group_numbers = served_optimizer.build(header["optimizer"], header["groups"], runs,
                                                                    pieces.__getitem__)
        self.flat = flat
        for name in OPTIMIZER_FIELDS:
            self.description[name] = header[name]

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
        """A rank registers (at its first step, again after a restart, or to pull); answered with the parameters
        once every rank of the job has registered (the start), at once after that."""
        rank = header["rank"]
        mine = {name: header[name] for name in self.description}
        compared = [name for name in mine if name not in OPTIMIZER_FIELDS or (mine["optimizer"] and self.optimizer)]
        differing = sorted(name for name in compared if _layout(mine)[name] != _layout(self.description)[name])
        if differing:
            raise ProtocolError(f"rank {rank}: {self.where} was served as {_describe(self.description, differing)} "
                                f"but this rank serves it as {_describe(mine, differing)}: every rank must build the "
                                "same model and optimizer")
        if rank in self.waiting:
            raise ProtocolError(f"rank {rank}: {self.where}: a request of this rank is still waiting")
        if header["optimizer"] and self.optimizer is None:
            self._build_optimizer(header)
        if rank == 0 and parts and protocol.payload_size(parts) and not self.ready:  # the start is rank 0's alone
            protocol.copy_payload(header, parts, self.values)
            self.ready = True
        if rank not in self.live:
            self.round.pop(rank, None)  # a gradient it pushed before it was dropped: it registers, and pushes, anew
            if rank in self.resumed:  # a rank of the checkpoint, registering with its restarted server: its own clock
                self.resumed.discard(rank)
            elif self.started:  # a rank that joins late or again: it goes on from the slowest live rank's step
                self.clock[rank] = min((self.clock[r] for r in self.live), default=self.clock.get(rank, 0))
            else:
                self.clock[rank] = 0
            self.live.add(rank)
        self.waiting[rank] = (identity, header["seq"], time.monotonic(), "serve")
        if not self.started and len(self.live) == self.world_size:
            self.started = True
        self.release()

    def push(self, header, parts, identity):
        """A rank's gradient: applied now (K >= 1) or with the round's (K = 0); answered when the bound allows."""
        rank = header["rank"]
        if rank not in self.live:
            raise ProtocolError(f"rank {rank}: pushed to {self.where} without being registered with it (never "
                                "served, or dropped when its connection was lost): serve it again")
        if self.optimizer is None:
            raise ProtocolError(f"rank {rank}: pushed to {self.where} before any rank described its optimizer "
                                "(a serve naming it comes first)")
        if rank in self.waiting:
            raise ProtocolError(f"rank {rank}: {self.where}: pushed again before its last push was answered")
        if header["dtype"] != self.description["dtype"] or header["shape"] != self.description["shape"]:
            raise ProtocolError(f"rank {rank}: pushed {header['dtype']} {header['shape']} to {self.where}, which "
                                f"holds {self.description['dtype']} {self.description['shape']}")
        if header["clock"] != self.clock[rank]:
            raise ProtocolError(f"rank {rank}: pushed its gradient number {header['clock']} to {self.where}, which "
                                f"expects number {self.clock[rank]} from it: a lost or repeated push")
        arrays = protocol.payload_arrays(header, parts)
        served_optimizer.set_hyperparameters(self.optimizer, self.group_numbers, header["groups"],
                                             f"rank {rank}: push to {self.where}")
        self.clock[rank] += 1
        if self.staleness == 0:
            self.waiting[rank] = (identity, header["seq"], time.monotonic(), "push")  # until its round is complete
            self.round[rank] = arrays
            self._complete_round()
        else:
            staleness = self.version - self.read_version[rank]
            try:
                self._apply(arrays, staleness)
            except BaseException:  # not counted: the rank may push this gradient again
                self.clock[rank] -= 1
                raise
            self.staleness_counts[staleness] += 1
            self.waiting[rank] = (identity, header["seq"], time.monotonic(), ("push", staleness))
        self.release()

    def drop(self, rank):
        """`rank` is gone (its connection closed): out of the bound and the rounds, so that the others go on.
        True if it was live here. A gradient it pushed before it went still counts in its round."""
        if rank not in self.live:
            return False
        self.live.discard(rank)
        self.waiting.pop(rank, None)
        if self.staleness == 0:
            self._complete_round()
        self.release()
        return True

    # -- updates ----------------------------------------------------------------------------
    def _complete_round(self):
        """K = 0: once every live rank's gradient is in, rank 0 + rank 1 + ... in rank order, divided by their
        number, one step (NOTE [ Stale synchronous parallel ])."""
        if not self.round or not self.live <= set(self.round):
            return
        wide = numpy.float32 if self.dtype == numpy.float16 else self.dtype
        total = numpy.empty(self.size, wide)
        ranks = sorted(self.round)
        for rank in ranks:
            offset = 0
            for part in self.round[rank]:
                window = total[offset:offset + part.size]
                if rank == ranks[0]:
                    window[...] = part
                else:
                    numpy.add(window, part, out=window, casting="unsafe")
                offset += part.size
        self.round.clear()
        total = total.astype(self.dtype, copy=False)  # as the allreduce's answer: rounded once, then divided
        numpy.divide(total, len(ranks), out=total)
        self._step(total, 1.0)
        for rank, (identity, seq, since, op) in self.waiting.items():
            if op == "push":
                self.waiting[rank] = (identity, seq, since, ("push", 0))
                self.staleness_counts[0] += 1

    def _apply(self, arrays, staleness):
        """K >= 1: one step on this gradient's share of the mean (divided by the live ranks), damped if asked."""
        ranks, offset = max(1, len(self.live)), 0
        for part in arrays:  # each frame divided straight into the optimizer's gradient buffer
            numpy.divide(part, ranks, out=self.flat.grad[offset:offset + part.size])
            offset += part.size
        self._step(None, min(1.0, ranks / (staleness + 1)) if self.damping else 1.0)

    def _step(self, gradient, damping):
        """One optimizer step on `gradient` (None: what is in the gradient buffer already)."""
        if gradient is not None:
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
    def _slowest(self):
        return min((self.clock[rank] for rank in self.live), default=0)

    def release(self):
        """Answer every held-back rank that the bound now lets go (none before the start, nor on a restarted
        server before the ranks of its checkpoint have registered again)."""
        if not self.ready or not self.started or self.resumed or not self.waiting:
            return
        slowest = self._slowest()
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

    def forget_resumed(self):
        """The ranks of the checkpoint that have not registered again are gone (server.py, after its heartbeat
        timeout): the others go on without them, who may join later as any rank. Returns them."""
        gone, self.resumed = sorted(self.resumed), set()
        self.release()
        return gone

    def expire(self, now, timeout_of):
        """Answer with an error every rank held back longer than its timeout, naming who it waits for."""
        for rank, (identity, seq, since, op) in list(self.waiting.items()):
            limit = timeout_of(rank)
            if now - since <= limit:
                continue
            del self.waiting[rank]
            slowest = self._slowest()
            behind = sorted(r for r in self.live if self.clock[r] == slowest)
            if not self.started:
                why = (f"rank(s) {sorted(set(range(self.world_size)) - self.live)} never registered (every rank "
                       "registers when DistributedDataParallel wraps its model)")
            elif self.resumed:
                why = f"rank(s) {sorted(self.resumed)} never registered again since the server restarted"
            elif not self.ready:
                why = "rank 0 never sent the starting parameters"
            elif self.staleness == 0:
                why = (f"this step needs every live rank's gradient, and rank(s) {sorted(self.live - set(self.round))} "
                       "never pushed theirs")
            else:
                why = (f"this rank is at step {self.clock[rank]}, rank(s) {behind} at step {slowest}, and the bound "
                       f"is {self.staleness} steps")
            self.reply(identity, {"op": "push" if op != "serve" else "serve", "seq": seq, "timed_out": float(limit),
                                  "error": f"{self.where}: rank {rank} waited {limit:g} s: {why}; a rank crashed, "
                                           "hangs, or is far slower than the others"})


def _layout(description):
    """What every rank's serve must say alike: all but the hyperparameters' values (a learning-rate schedule moves
    them; a rank that registers later says today's), of which the names and the number of groups count."""
    groups = description["groups"]
    names = [sorted(group) if isinstance(group, dict) else group for group in groups] if isinstance(groups, list) \
        else groups
    return {**description, "groups": names}


def _describe(description, names):
    return ", ".join(f"{name}={description[name]!r:.120}" for name in names)
