"""A rank's side of asynchronous training: its model's parameters live on the parameter servers.

    python -m distrain.launch -n 4 --backend ps --ps-mode async --staleness 2 train.py

The training script does not change: DistributedDataParallel (in asynchronous mode)
hands the model to a `ServedModel`, and the optimizer's `step()` becomes a push of the
gradients and a pull of fresh parameters, while the servers run the optimizer itself
(NOTE [ Stale synchronous parallel ] in stale_synchronous.py). Backward is local: no
allreduce runs, and `no_sync()` needs nothing (gradients accumulate until the next step).

The model's flat buffers are split into shards as a synchronous allreduce is split into
partitions (partitions.py): shard k of a buffer lives on server k mod S. At the first step
the rank registers with every shard ("serve": the optimizer's class and hyperparameters,
which elements belong to which param group; rank 0 also sends the starting values), and
takes the parameters the servers answer with. Each step then pushes every shard's
gradient slice at once and copies each answer into its slice of the parameters.
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import time

from ...engine.flat import pack_parameters
from ...errors import DistrainError
from ..base import CommunicatorError
from . import partitions, served_optimizer
from .stale_synchronous import INFINITE

_tables = itertools.count()  # the same on every rank that builds its models in the same order


class ServedModel:
    """The parameters of one model, served by `comm`'s parameter servers (module docstring).

    Attributes:
        staleness_histogram: {staleness: steps}: per step, the largest staleness of the
            gradient's shards (the updates applied between the parameters it was computed
            on and its own; about N-1 for N ranks in step, 0 with K=0).
        steps: gradients pushed (this rank's clock; a rank that rejoins takes the servers').
        wait_seconds: time spent in step() waiting for the servers (pushes, pulls and the
            staleness bound's holds).
    """

    def __init__(self, comm, parameters, staleness, damping=False, names=None):
        """`names`: the parameters' names (DistributedDataParallel's); with their shapes and dtypes they make the
        model's signature, which every rank's registration must share (the server compares, no collective runs:
        a rank restarted mid-job registers alone)."""
        self.comm = comm
        parameters = [p for p in parameters if p.requires_grad]
        names = list(names) if names is not None else [str(index) for index in range(len(parameters))]
        signature = repr([(name, tuple(p.shape), p.dtype.name) for name, p in zip(names, parameters)])
        self.signature = hashlib.sha256(signature.encode()).hexdigest()[:32]
        self.staleness = INFINITE if staleness is None or staleness == float("inf") else int(staleness)
        self.damping = bool(damping)
        self.flats = pack_parameters(parameters)
        self.tables = [next(_tables) for _ in self.flats]
        self.shards = []  # per flat: [(start, stop, server)]
        for flat in self.flats:
            plan = partitions.plan(flat.numel(), flat.data.itemsize, comm.partition_bytes, len(comm.connections))
            self.shards.append(plan or [(0, flat.numel(), 0)])
        for flat in self.flats:
            for parameter in flat.parameters:
                parameter._served = self
        self.registered = False
        self._descriptions = {}  # (table, shard) -> what this rank's serve said (a pull says it again)
        self.steps = 0
        self.staleness_histogram = collections.Counter()
        self.wait_seconds = 0.0

    # -- the optimizer's step -----------------------------------------------------------------
    def step(self, optimizer):
        """Push this rank's gradients, wait for the bound, take the fresh parameters (the optimizer runs remotely)."""
        started = time.perf_counter()
        if not self.registered:
            self._register(optimizer)
        groups = served_optimizer.hyperparameters(optimizer)
        handles = []
        for flat, table, shards in zip(self.flats, self.tables, self.shards):
            self._gather_gradients(flat)
            for number, (start, stop, server) in enumerate(shards):
                header = {"op": "push", "table": table, "shard": number, "clock": self.steps,
                          "dtype": flat.dtype.name, "shape": [stop - start], "groups": groups}
                handles.append(self._request(server, header, flat.grad[start:stop], flat.data[start:stop],
                                             f"push of step {self.steps} (shard {number} of model {table})"))
        answers = self._wait(handles)
        self.steps += 1
        self.staleness_histogram[max(answer["staleness"] for answer in answers)] += 1
        self._bump_versions()
        self.wait_seconds += time.perf_counter() - started

    def _register(self, optimizer):
        """Serve every shard: the optimizer's description, rank 0's values; take the servers' parameters and clock."""
        name, groups, group_of = served_optimizer.describe(optimizer, self.flats)
        handles = []
        for flat, table, shards in zip(self.flats, self.tables, self.shards):
            # (start, stop, group) of each parameter in the buffer
            elements = [(offset, offset + numel, group_of[id(parameter)]) for parameter, offset, numel in flat.segments()]
            for number, (start, stop, server) in enumerate(shards):
                self._descriptions[(table, number)] = description = {
                    "table": table, "shard": number, "model": self.signature, "dtype": flat.dtype.name,
                    "shape": [stop - start],
                    "optimizer": name, "groups": groups, "runs": _runs(elements, start, stop),
                    "staleness": self.staleness, "damping": self.damping}
                header = {"op": "serve", **description}
                values = flat.data[start:stop] if self.comm.rank == 0 else b""
                handles.append(self._request(server, header, values, flat.data[start:stop],
                                             f"registering with shard {number} of model {table}"))
        answers = self._wait(handles)
        clocks = {answer["clock"] for answer in answers}
        if len(clocks) != 1:
            raise DistrainError(f"rank {self.comm.rank}: the parameter servers disagree on how many steps this rank "
                                f"has taken ({sorted(clocks)}): a server was restarted from an older checkpoint "
                                "than the others")
        self.steps = clocks.pop()
        self.registered = True
        self._bump_versions()

    def pull(self):
        """Take the servers' current parameters (without pushing): asynchronous ranks end training with
        parameters of different versions; a pull before evaluating or saving gives every rank the latest."""
        if not self.registered:
            return  # never stepped: the parameters are rank 0's, as the servers' are
        handles = []
        for flat, table, shards in zip(self.flats, self.tables, self.shards):
            for number, (start, stop, server) in enumerate(shards):
                header = {"op": "serve", **self._descriptions[(table, number)]}
                handles.append(self._request(server, header, b"", flat.data[start:stop],
                                             f"pulling shard {number} of model {table}"))
        self._wait(handles)
        self._bump_versions()

    @staticmethod
    def _gather_gradients(flat):
        """Every parameter's gradient in its slice of flat.grad: zeros for a parameter without one (unused in this
        forward, as DistributedDataParallel reduces zeros for it), a copy for one whose .grad was replaced."""
        for parameter, offset, numel in flat.segments():
            if flat.grad_is_flat(parameter):
                continue
            view = flat.grad[offset:offset + numel]
            if parameter._grad is None:
                view[...] = 0
            else:
                view[...] = parameter._grad._data.reshape(-1)
            parameter._grad = parameter._flat_grad

    def _request(self, server, header, payload, into, what):
        connection = self.comm.connections[server]

        def finish(answer, parts):
            from .protocol import copy_payload

            copy_payload({"dtype": into.dtype.name, "shape": [into.size], "op": header["op"]}, parts, into)
            return answer

        handle = connection.request(header, payload, what=f"{what} on {connection.name}", finish=finish)
        handle.timeout = self.comm.timeout
        handle.alongside = tuple(other for other in self.comm.connections if other is not connection)
        return handle

    def _wait(self, handles):
        try:
            return [handle.wait() for handle in handles]
        except CommunicatorError:
            for handle in handles:  # answers still on their way would land in parameters being rewritten
                handle.connection.in_flight.pop(handle.seq, None)
            raise

    def _bump_versions(self):
        for flat in self.flats:
            for parameter in flat.parameters:
                parameter._version_counter[0] += 1


def _runs(elements, start, stop):
    """[start, stop, group] of the param groups' runs within [start, stop), relative to start, adjacent runs of
    one group merged (served_optimizer.py says why the server may merge them)."""
    runs = []
    for low, high, group in elements:
        low, high = max(low, start), min(high, stop)
        if low >= high:
            continue
        if runs and runs[-1][2] == group and runs[-1][1] == low - start:
            runs[-1][1] = high - start
        else:
            runs.append([low - start, high - start, group])
    if len(runs) > served_optimizer.MAX_RUNS:
        raise DistrainError(f"asynchronous parameter-server training: a shard of the model alternates between param "
                            f"groups {len(runs)} times, at most {served_optimizer.MAX_RUNS}: put each group's "
                            "parameters next to each other (or use fewer groups)")
    return runs
