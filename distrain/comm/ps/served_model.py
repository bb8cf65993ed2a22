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
import os
import time

from ...engine.flat import pack_parameters
from ...errors import DistrainError
from ..base import CommunicatorError
from . import partitions, served_optimizer
from .seconds_settings import seconds
from .stale_synchronous import INFINITE

_tables = itertools.count()  # the same on every rank that builds its models in the same order
RECONNECT_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_RECONNECT_SECONDS"
DEFAULT_RECONNECT_SECONDS = 15.0


def reconnect_seconds(environ=os.environ):
    """How long a rank tries to reach a parameter server that went away (NOTE [ A server that restarts ]):
    $DISTRAIN_PS_RECONNECT_SECONDS, else 15 s."""
    return seconds(None, RECONNECT_ENVIRONMENT_VARIABLE, DEFAULT_RECONNECT_SECONDS, 0.0, 24 * 3600,
                   RECONNECT_ENVIRONMENT_VARIABLE, environ)


class ServedModel:
    """The parameters of one model, served by `comm`'s parameter servers (module docstring).

    Attributes:
        staleness_histogram: {staleness: steps}: per step, the largest staleness of the
            gradient's shards (the updates applied between the parameters it was computed
            on and its own; about N-1 for N ranks in step, 0 with K=0).
        steps: the steps this process has taken (the servers keep each shard's count of this rank's pushes,
            `clocks`, which a restarted rank or server takes from them).
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
        for flat in self.flats:
            if flat.array_module.__name__ != "numpy":
                raise DistrainError(f"asynchronous parameter-server training holds the parameters on the servers and "
                                    f"takes them on the CPU; this model's are on {flat.device}: train it with "
                                    "ps_mode=\"sync\" (or the nccl backend), or on the CPU")
        self.shards = {}  # (table, shard number) -> (flat, start, stop, server)
        for flat, table in zip(self.flats, self.tables):
            plan = partitions.plan(flat.numel(), flat.data.itemsize, comm.partition_bytes, len(comm.connections))
            for number, (start, stop, server) in enumerate(plan or [(0, flat.numel(), 0)]):
                self.shards[(table, number)] = (flat, start, stop, server)
        for flat in self.flats:
            for parameter in flat.parameters:
                parameter._served = self
        self.described = False  # the servers know this rank's optimizer
        self._descriptions = {}  # (table, shard) -> what this rank's serve says (a pull or a reconnection again)
        self.clocks = {}  # (table, shard) -> this rank's gradients pushed there (the servers' count, after a restart)
        self.steps = 0
        self.staleness_histogram = collections.Counter()
        self.wait_seconds = 0.0
        self.reconnect_seconds = reconnect_seconds()
        for key, (flat, start, stop, server) in self.shards.items():  # the optimizer: described at the first step
            self._descriptions[key] = {
                "table": key[0], "shard": key[1], "model": self.signature, "dtype": flat.dtype.name,
                "shape": [stop - start], "optimizer": "", "groups": [], "runs": [], "staleness": self.staleness,
                "damping": self.damping}
        # every rank starts from rank 0's parameters, as DistributedDataParallel's broadcast makes them in synchronous
        # mode: the servers answer once every rank has registered (a restarted rank: at once, with today's)
        self._exchange(self._serve)
        self._bump_versions()

    # -- the optimizer's step -----------------------------------------------------------------
    def step(self, optimizer):
        """Push this rank's gradients, wait for the bound, take the fresh parameters (the optimizer runs remotely)."""
        started = time.perf_counter()
        if not self.described:
            self._describe(optimizer)
        groups = served_optimizer.hyperparameters(optimizer)
        for flat in self.flats:
            self._gather_gradients(flat)

        pushed = dict(self.clocks)  # the number each push carries

        def push(key):
            if self.clocks[key] > pushed[key]:  # a restarted server's checkpoint counted it: not to be applied twice
                return None
            flat, start, stop, _ = self.shards[key]
            return ({"op": "push", "table": key[0], "shard": key[1], "clock": self.clocks[key],
                     "dtype": flat.dtype.name, "shape": [stop - start], "groups": groups},
                    flat.grad[start:stop], f"push of step {self.steps} (shard {key[1]} of model {key[0]})")

        answers = self._exchange(push)
        self.steps += 1
        self.staleness_histogram[max(answer["staleness"] for answer in answers.values())] += 1
        self._bump_versions()
        self.wait_seconds += time.perf_counter() - started

    def _describe(self, optimizer):
        """Serve every shard again, naming the optimizer (its class, hyperparameters, which elements are in which
        param group), which the servers then build, before this rank's first push."""
        name, groups, group_of = served_optimizer.describe(optimizer, self.flats)
        elements = {}  # per flat: (start, stop, group) of each parameter in the buffer
        for flat in self.flats:
            elements[id(flat)] = [(offset, offset + numel, group_of[id(parameter)])
                                  for parameter, offset, numel in flat.segments()]
        for key, (flat, start, stop, server) in self.shards.items():
            self._descriptions[key].update(optimizer=name, groups=groups, runs=_runs(elements[id(flat)], start, stop))
        self._exchange(self._serve, into=False)  # the parameters this step's gradient was computed on stay
        self.described = True

    def _serve(self, key):
        """A serve request for shard `key`: registers this rank (again), carries rank 0's values (taken only by a
        server that has none: a new one, not one resumed from its checkpoint)."""
        flat, start, stop, _ = self.shards[key]
        values = flat.data[start:stop] if self.comm.rank == 0 else b""
        return {"op": "serve", **self._descriptions[key]}, values, f"registering with shard {key[1]} of model {key[0]}"

    def pull(self):
        """Take the servers' current parameters (without pushing): asynchronous ranks end training with
        parameters of different versions; a pull before evaluating or saving gives every rank the latest."""
        def pull(key):
            return {"op": "serve", **self._descriptions[key]}, b"", f"pulling shard {key[1]} of model {key[0]}"

        self._exchange(pull)
        self._bump_versions()

    # -- requests, answers, and servers that restart ------------------------------------------
    def _exchange(self, request, keys=None, into=True):
        """Send `request(key)` -> (header, payload, what) for every shard at once; copy each answer into the
        shard's parameters (unless `into` is False); {key: answer header}. Every answer sets the shard's clock (the
        server's count of this rank's pushes); `request(key)` returning None means nothing to send (answered).

        NOTE [ A server that restarts ]
        A server whose connection closes (its process died) may be started again, from its
        checkpoint (server_checkpoint.py): for `reconnect_seconds` this rank tries to
        connect to the same address, registers again with every shard there (taking that
        server's parameters and its count of this rank's pushes), and sends that server's
        requests again, but for a push that its checkpoint had counted already (the clock it
        answers the registration with is past the push's): that gradient is in the restored
        parameters, and sending it again would apply it twice. A server that stays down fails
        the step with an error naming it.
        """
        todo, answers = list(self.shards) if keys is None else list(keys), {}
        while todo:
            handles, lost = {}, set()
            try:
                for key in todo:
                    made = request(key)
                    if made is None:  # nothing to send: the servers have it (a push counted before a restart)
                        answers[key] = {"op": "push", "clock": self.clocks[key], "staleness": 0}
                        continue
                    header, payload, what = made
                    flat, start, stop, server = self.shards[key]
                    if server in lost:
                        continue
                    try:
                        handles[key] = self._request(server, header, payload,
                                                     flat.data[start:stop] if into else None, what)
                    except CommunicatorError:
                        if self.comm.connections[server].lost is None:
                            raise
                        lost.add(server)  # it went away before this request: sent again once it is back
                for key, handle in handles.items():
                    try:
                        answers[key] = handle.wait()
                    except CommunicatorError:
                        server = self.shards[key][3]
                        if self.comm.connections[server].lost is None:
                            raise
                        lost.add(server)
            except BaseException:
                for handle in handles.values():  # answers still on their way would land in parameters being rewritten
                    handle.connection.in_flight.pop(handle.seq, None)
                raise
            for key, answer in answers.items():
                if key in handles:  # a serve's or a push's answer: the server's count of this rank's pushes
                    self.clocks[key] = answer["clock"]
            if lost:
                self._reconnect(sorted(lost))
                for key in list(answers):  # a restarted server resumed from before these answers: ask again
                    if self.shards[key][3] in lost:
                        del answers[key]
            todo = [key for key in todo if key not in answers]
        return answers

    def _reconnect(self, servers):
        """Connect again to each of `servers` (restarted) and register with its shards (NOTE [ A server that
        restarts ]); an error naming a server still down after `reconnect_seconds`."""
        from .client import ServerConnection

        for server in servers:
            old = self.comm.connections[server]
            deadline = time.monotonic() + self.reconnect_seconds
            while True:
                try:
                    connection = ServerConnection(old.address, self.comm.rank, self.comm.size, old.secret,
                                                  self.comm.timeout, old.layout, old.name,
                                                  connect_timeout=max(0.5, deadline - time.monotonic()))
                    break
                except CommunicatorError as error:
                    if time.monotonic() >= deadline:
                        raise CommunicatorError(
                            f"rank {self.comm.rank}: {old.name} went away and did not come back within "
                            f"{self.reconnect_seconds:g} s ({error}); asynchronous training cannot go on without "
                            "the parameters it holds: restart it with its checkpoint (--checkpoint), or the job "
                            f"(${RECONNECT_ENVIRONMENT_VARIABLE} sets how long ranks wait)") from None
                    time.sleep(0.2)
            old.close()
            self.comm.connections[server] = connection
            if server == 0:
                self.comm.connection = connection
            self._exchange(self._serve, [key for key, shard in self.shards.items() if shard[3] == server])

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

            if into is not None:
                copy_payload({"dtype": into.dtype.name, "shape": [into.size], "op": header["op"]}, parts, into)
            return answer

        handle = connection.request(header, payload, what=f"{what} on {connection.name}", finish=finish)
        handle.timeout = self.comm.timeout  # a lost server fails its own requests only: the others are answered
        return handle

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
