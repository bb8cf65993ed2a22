"""The parameter server: sums the ranks' gradients and hands every rank the result.

In a parameter-server job the ranks do not talk to each other: each sends its bucket of
gradients to this server, which adds the buckets up once all `world_size` have arrived
and sends the sum back to each (the "summation service" of BytePS). Every rank then
applies the same averaged gradient with its own optimizer, so the parameters stay equal
on all ranks, exactly as under MPI. The same server answers broadcast, allgather and
barrier, for the whole job or a subgroup of it (new_group: each group's collectives are
matched and summed among its members only, in group-rank order), relays point-to-point
messages (mailbox.py; the handlers in relay.py), and keeps a small key-value store that the launcher's ranks use as
their rendezvous (e.g. to share the NCCL unique id). A job may run several servers, each
summing its share of the large allreduces (NOTE [ Partitions on several servers ]).

    python -m distrain.comm.ps.server --world-size 4 --bind tcp://0.0.0.0:5555 --secret-file ~/.distrain/secret

Robustness (shared/DESIGN.md):
- Every peer is authenticated, loopback included: its connection's handshake must show
  the job's secret (comm/zap.py) before ZeroMQ reads any message from it, and beyond
  loopback every message also carries an HMAC with the secret (protocol.py). It binds to
  127.0.0.1 unless told otherwise; beyond loopback it needs a secret that the ranks
  share; on loopback without one it makes one (the command line writes it to a mode-600
  file and says where).
- A refused handshake or a message that fails its MAC is dropped unanswered; a malformed
  message from an authentic peer gets an error reply; none ever stops the server.
  Refusals are logged rate-limited (refusals.py).
- Memory is bounded before authentication: a peer whose handshake has not passed gets
  no message read, and ZeroMQ drops a peer announcing a frame over protocol.FRAME_BYTES
  (1 MiB) before buffering it, so a stranger holds at most one such frame per connection.
  After it, a payload may have at most `max_message_bytes`, at most
  RECEIVE_QUEUE_MESSAGES messages wait per peer, a rank may have at most
  MAX_PENDING_PER_RANK collectives, store reads, receives and unreceived sends waiting
  for the other ranks, its unreceived sends hold at most `max_mailbox_bytes`
  (mailbox.py), and at most MAX_GROUPS subgroups exist at once.
- Ranks whose calls disagree (different ops, dtypes, shapes or roots for the same
  collective) all get an error naming both calls, instead of a wrong result.
- A collective that some ranks never join fails after the ranks' timeout, and the ranks
  that did join are told which ranks never arrived.

Sums are deterministic: contributions are added in rank order (rank 0 + rank 1 + ...)
whatever order they arrive in, so a rerun gives bit-identical results.
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import secrets
import signal
import sys
import threading
import time

import numpy
import zmq

from .. import zap
from . import protocol, server_checkpoint
from .mailbox import Mailboxes
from .protocol import ProtocolError
from .refusals import RefusalLog
from .lost_ranks import DEFAULT_HEARTBEAT_TIMEOUT, HEARTBEAT_ENVIRONMENT_VARIABLE, HEARTBEAT_INTERVAL_MILLISECONDS, \
    LostRanks, heartbeat_seconds
from .relay import MessagesAndGroups, Group
from .served_requests import ServedRequests

log = logging.getLogger("distrain.ps")

POLL_MILLISECONDS = 200
RECEIVE_QUEUE_MESSAGES = 16  # per peer; beyond it ZeroMQ stops reading that peer's socket until the server catches up
SEND_QUEUE_MESSAGES = 4096  # answers waiting for a rank that does not read them; beyond it they are dropped, logged
MAX_PENDING_PER_RANK = 1024  # collectives and store reads of one rank waiting for the others
MAX_STORE_KEYS = 1024
_REDUCE = {"sum": numpy.add, "max": numpy.maximum, "min": numpy.minimum}


class _Collective:
    """One collective (by group and index) while its ranks arrive."""

    def __init__(self, header, now, group=None):
        self.op = header["op"]
        self.signature = {k: header[k] for k in ("dtype", "shape", "reduce", "root") if k in header}
        self.started = now
        self.group = group
        self.callers = {}  # rank -> (identity, seq)
        self.payloads = {}  # group rank -> its payload's parts (flat arrays, views of its frames), until folded
        self.total = None  # flat
        self.folded = 0  # group ranks 0..folded-1 are in `total`

    def describe(self):
        details = ", ".join(f"{k}={v}" for k, v in self.signature.items())
        return f"{self.op}({details})" if details else self.op

    def fold_in_rank_order(self):
        """Add every contribution whose turn has come (deterministic: always rank 0 + rank 1 + ...)."""
        reduce = _REDUCE[self.signature["reduce"]]
        dtype = numpy.dtype(self.signature["dtype"])
        while self.folded in self.payloads:
            parts, offset = self.payloads.pop(self.folded), 0
            if self.total is None:
                # float16 is summed in float32 and rounded once, like NCCL's half-precision sums
                wide = numpy.float32 if dtype == numpy.float16 else dtype
                self.total = numpy.empty(sum(part.size for part in parts), wide)
                for part in parts:
                    self.total[offset:offset + part.size] = part
                    offset += part.size
            else:
                for part in parts:  # each part where it lies: the frames are never joined into one array
                    window = self.total[offset:offset + part.size]
                    reduce(window, part, out=window, casting="unsafe")
                    offset += part.size
            self.folded += 1


class ParameterServer(MessagesAndGroups, ServedRequests, LostRanks):
    """Serves one job of `world_size` ranks at `bind` (see the module docstring).

    `start()` runs it in a background thread (the launcher's way), `serve()` in the
    calling thread (the command line's way); `address` is where ranks connect. Each server
    has a ZeroMQ context of its own: the handshake's handler (zap.py) serves one context.
    """

    def __init__(self, world_size, bind="tcp://127.0.0.1:0", secret=None, timeout=None,
                 max_message_bytes=None, log_interval=10.0, max_mailbox_bytes=None, heartbeat_timeout=None,
                 checkpoint=None, checkpoint_every=None):
        if int(world_size) < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}")
        self.world_size = int(world_size)
        self.secret = protocol.load_secret(secret)  # the argument, else $DISTRAIN_PS_SECRET(_FILE)
        self.secret_generated = self.secret is None
        if self.secret is None:
            if not protocol.is_loopback(bind):
                raise ValueError(f"refusing to serve on {bind} without authentication: anyone who can reach it "
                                 f"could inject gradients. Set {protocol.SECRET_ENVIRONMENT_VARIABLE} (or "
                                 "--secret-file) on the server and every rank, or bind to tcp://127.0.0.1")
            self.secret = protocol.new_secret().encode()  # loopback: a fresh one, for the ranks this process tells
        self.max_message_bytes = protocol.max_message_bytes(max_message_bytes)
        # a sender's messages waiting for their receivers: two of the largest by default (mailbox.py)
        self.mailboxes = Mailboxes(2 * self.max_message_bytes if max_mailbox_bytes is None else max_mailbox_bytes)
        self.timeout = timeout  # None: each collective uses its ranks' own timeout (from their hello)
        self.signed = not protocol.is_loopback(bind)  # beyond loopback, a MAC on every message (protocol.py)
        self.refusals = RefusalLog(log, log_interval)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.heartbeat_timeout = heartbeat_seconds(heartbeat_timeout)
        for option, value in ((zmq.LINGER, 1000), (zmq.SNDHWM, SEND_QUEUE_MESSAGES),
                              (zmq.RCVHWM, RECEIVE_QUEUE_MESSAGES), (zmq.MAXMSGSIZE, protocol.FRAME_BYTES),
                              (zmq.ROUTER_MANDATORY, 1), (zmq.HEARTBEAT_IVL, HEARTBEAT_INTERVAL_MILLISECONDS),
                              (zmq.HEARTBEAT_TIMEOUT, int(self.heartbeat_timeout * 1000))):
            self.socket.setsockopt(option, value)
        # NOTE [ Lost ranks ]: a closed connection is reported with its file descriptor, which each join records
        self.events = self.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.gate = None
        try:
            self.gate = zap.guard(self.socket, self.secret, self._refused_handshake)
            self.socket.bind(bind[:-2] + ":*" if bind.endswith(":0") else bind)
        except zmq.ZMQError:
            self._release(linger=0)
            raise
        self.address = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.session = secrets.token_bytes(16)
        self.ranks = {}  # rank -> {"identity", "next_seq", "timeout", "left"}
        self.layout = None  # ((server addresses), partition bytes) and the rank that joined first with it
        self.groups = {0: Group(range(self.world_size))}  # group id -> Group (0: the whole job)
        self.collectives = {}  # (group id, index) -> _Collective
        self.failed = {}  # (group id, index) -> why, so that ranks arriving after a failure hear it at once
        self.store = {}
        self.store_waiters = {}  # key -> [(rank, identity, seq, deadline)]
        self.pending = collections.Counter()  # rank -> its collectives and store reads waiting for other ranks
        self.shards = {}  # (table, shard) -> ServedShard: asynchronous mode's parameters (stale_synchronous.py)
        self.dropped = set()  # ranks lost while registered with a served shard, until they join again
        self.checkpoint = checkpoint  # server_checkpoint.py: where this server keeps them, every N updates
        self.checkpoint_every = server_checkpoint.DEFAULT_EVERY if checkpoint_every is None else int(checkpoint_every)
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1 update, got {checkpoint_every}")
        self._checkpointed_at = (0, 0)  # _updates() at the last checkpoint
        if checkpoint is not None:
            try:
                self.shards = server_checkpoint.load(checkpoint, self.world_size, self._reply, self.max_message_bytes)
            except BaseException:
                self._release(linger=0)
                raise
            self._checkpointed_at = self._updates()
        self.refused = 0  # messages dropped or answered with an error (for monitoring and tests)
        self._stop = threading.Event()
        self._thread = None

    # -- running ----------------------------------------------------------------------------
    def start(self):
        """Serve in a daemon thread; returns self (use `close()` to stop)."""
        self._thread = threading.Thread(target=self.serve, name="distrain-parameter-server", daemon=True)
        self._thread.start()
        return self

    def serve(self, until_all_left=False):
        """Answer messages until close() (or, with until_all_left, until every rank joined and said bye)."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(POLL_MILLISECONDS):
                    self._take_events()
                    while self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        self._handle(self.socket.recv_multipart(copy=False))
                        self._take_events()
                self._expire(time.monotonic())
                self._checkpoint_if_due()
                self.refusals.flush()
                if until_all_left and len(self.ranks) == self.world_size and all(
                        info["left"] for info in self.ranks.values()):
                    return
        finally:
            self._checkpoint_if_due(force=True)  # a server stopped on purpose keeps every update
            self.refusals.flush(force=True)
            self._release()

    @property
    def refused_handshakes(self):
        """Connections refused at the handshake (without the job's secret), retries included."""
        return self.gate.refused

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        elif not self.socket.closed:  # never started: serve() did not get to release it
            self._release(linger=0)

    def _release(self, linger=None):
        """Close the socket, stop the handshake's handler, end the context (in that order: term() waits for both)."""
        self.socket.disable_monitor()
        self.events.close(linger=0)
        self.socket.close(linger=linger)
        if self.gate is not None:
            self.gate.stop()
        self.context.term()

    def _refused_handshake(self, address, reason):  # called from the handshake handler's thread
        self.refusals.refused("bad handshake", reason, address)

    # -- one message ------------------------------------------------------------------------
    def _handle(self, frames):
        identity, message = frames[0].bytes, frames[1:]
        try:
            header, payload = protocol.unpack(message, self.secret, signed=self.signed)
        except ProtocolError as error:  # not authentic, or not even a header: dropped unanswered
            self.refused += 1
            self.refusals.refused(error.kind, str(error), _peer_address(frames))
            return
        seq = header.get("seq") if isinstance(header.get("seq"), int) else None
        try:
            op = protocol.check_envelope(header, self.world_size)
            if op == "join":
                protocol.check_request(header, self.world_size)
            self._check_sender(op, header, identity)  # counts the message, even if the rest is refused
            protocol.check_request(header, self.world_size)
            if protocol.payload_size(payload) > self.max_message_bytes:
                raise ProtocolError(f"rank {header['rank']}: {op} sent {protocol.payload_size(payload)} bytes, over "
                                    f"this server's limit of {self.max_message_bytes}")
            if op == "join":
                self._on_join(header, payload, identity, message[0].get(zmq.SRCFD))
            else:
                getattr(self, "_on_" + op)(header, payload, identity)
        except ProtocolError as error:
            self.refused += 1
            self.refusals.refused(error.kind, str(error), self._sender(header, frames))
            self._reply(identity, {"op": header.get("op"), "seq": seq, "error": str(error)})
        except Exception as error:  # a bug here must cost one request, never the server of a whole job
            self.refused += 1
            self.refusals.refused("internal error", f"{type(error).__name__}: {error}", self._sender(header, frames),
                                  exc_info=True)
            self._reply(identity, {"op": str(header.get("op")), "seq": seq,
                                   "error": f"internal server error: {type(error).__name__}: {error}"})

    @staticmethod
    def _sender(header, frames):
        rank = header.get("rank")
        return f"rank {rank} at {_peer_address(frames)}" if isinstance(rank, int) else _peer_address(frames)

    def _check_sender(self, op, header, identity):
        rank = header["rank"]
        info = self.ranks.get(rank)
        if op == "hello":
            return  # asks for the session token, claims nothing
        if header["session"] != self.session:
            raise ProtocolError(f"rank {rank}: {op} belongs to another server session")
        if op == "join":
            if info is not None and info["identity"] != identity and not info["left"]:
                raise ProtocolError(f"rank {rank} has already joined from another process: two processes were "
                                    f"given the same RANK, or a second job uses this server's address "
                                    f"({self.address}, e.g. the same MASTER_PORT): give each job its own port")
            return
        if info is None or info["identity"] != identity:
            raise ProtocolError(f"rank {rank} sent {op} before joining")
        if header["seq"] != info["next_seq"]:
            raise ProtocolError(f"rank {rank}: message number {header['seq']} out of order "
                                f"(expected {info['next_seq']}): a replayed or lost message")
        info["next_seq"] += 1

    def _reply(self, identity, header, payload=b"", digest=None):
        """Answer a peer without ever blocking the server: an answer for a peer that is gone, or whose queue
        of unread answers is full (SEND_QUEUE_MESSAGES), is dropped and logged."""
        try:
            header = {**header, "session": self.session}  # replies name their session; the client checks it
            signed = self.signed or header.get("op") == "hello"  # hello's answer always: the rank checks the server
            frames = protocol.pack(header, payload, self.secret, protocol.REPLY, digest, signed)
            self.socket.send_multipart([identity] + frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as error:  # EHOSTUNREACH (ROUTER_MANDATORY) or EAGAIN (its queue is full)
            self.refusals.refused("unanswerable", f"could not answer {header.get('op')}: {error}",
                                  f"peer {identity.hex()}")

    # -- requests ---------------------------------------------------------------------------
    def _on_hello(self, header, payload, identity):
        self._reply(identity, {"op": "hello", "seq": header["seq"], "session": self.session,
                               "max_message_bytes": self.max_message_bytes, "signed": self.signed})

    def _on_join(self, header, payload, identity, fd=None):
        rank = header["rank"]
        if header["version"] != protocol.PROTOCOL_VERSION:
            raise ProtocolError(f"rank {rank} speaks protocol version {header['version']}, this server "
                                f"{protocol.PROTOCOL_VERSION}: run the same distrain everywhere")
        if header["world_size"] != self.world_size:
            raise ProtocolError(f"rank {rank} expects a world of {header['world_size']} ranks, but this server "
                                f"serves {self.world_size}: start every rank and the server with the same size")
        self._check_layout(rank, protocol.check_join_layout(header))
        self.dropped.discard(rank)  # back (restarted): it may meet the others again
        self.ranks[rank] = {"identity": identity, "next_seq": header["seq"] + 1, "timeout": header["timeout"],
                            "left": False, "fd": fd}
        self._reply(identity, {"op": "join", "seq": header["seq"], "world_size": self.world_size})

    def _check_layout(self, rank, layout):
        """The first join's servers and partition size are the job's: a rank naming others is refused."""
        if self.layout is None:
            self.layout = (layout, rank)
            return
        (servers, partition), first = self.layout
        if layout != (servers, partition):
            raise ProtocolError(
                f"rank {rank} was started with the parameter servers {list(layout[0])} and partitions of "
                f"{layout[1]} bytes, but rank {first} with {list(servers)} and {partition} bytes: start every rank "
                f"with the same servers (${protocol.ADDRESSES_ENVIRONMENT_VARIABLE}, the launcher's --servers) and "
                f"partition size (${protocol.PARTITION_ENVIRONMENT_VARIABLE}, --partition-mb)")

    def _on_bye(self, header, payload, identity):
        self.ranks[header["rank"]]["left"] = True
        for shard in self.shards.values():  # a rank that has finished no longer holds the others back
            shard.drop(header["rank"])
        self._reply(identity, {"op": "bye", "seq": header["seq"]})

    def _on_store_set(self, header, payload, identity):
        key = header["key"]
        if key not in self.store and len(self.store) >= MAX_STORE_KEYS:
            raise ProtocolError(f"rank {header['rank']}: the rendezvous store is full ({MAX_STORE_KEYS} keys)")
        self.store[key] = b"".join(payload)
        self._reply(identity, {"op": "store_set", "seq": header["seq"]})
        for rank, waiter, seq, _ in self.store_waiters.pop(key, []):
            self.pending[rank] -= 1
            self._reply(waiter, {"op": "store_get", "seq": seq}, self.store[key])

    def _on_store_get(self, header, payload, identity):
        key, rank = header["key"], header["rank"]
        if key in self.store:
            self._reply(identity, {"op": "store_get", "seq": header["seq"]}, self.store[key])
            return
        self._check_pending(rank)
        deadline = time.monotonic() + self._timeout_of(rank)
        self.store_waiters.setdefault(key, []).append((rank, identity, header["seq"], deadline))
        self.pending[rank] += 1

    def _check_pending(self, rank):
        if self.pending[rank] >= MAX_PENDING_PER_RANK:
            raise ProtocolError(f"rank {rank} already has {self.pending[rank]} collectives or store reads waiting "
                                f"for the other ranks (unreceived sends and unanswered receives included; at most "
                                f"{MAX_PENDING_PER_RANK}): the other ranks are far behind, or make fewer calls than "
                                "this one")

    def _timeout_of(self, rank):
        return self.timeout if self.timeout is not None else self.ranks[rank]["timeout"]

    def _on_collective(self, header, payload, identity):
        index, rank = (header["group"], header["index"]), header["rank"]
        group = self._group_of(header)
        name = f"collective #{index[1]}" + (f" of {group.describe()}" if index[0] else "")
        if index in self.failed:
            raise ProtocolError(self.failed[index])
        gone = sorted(self.dropped.intersection(group.members))
        if gone:
            raise ProtocolError(f"{name} {header['op']}: {self._dropped_message(gone)}")
        if header["op"] == "broadcast" and not header["root"] < len(group.members):
            raise ProtocolError(f"rank {rank}: broadcast root {header['root']} is outside {group.describe()}")
        contributes = header["op"] in ("allreduce", "allgather") or (header["op"] == "broadcast"
                                                                     and group.index[rank] == header["root"])
        parts = protocol.payload_arrays(header, payload) if contributes else None  # refused before it counts
        self._check_pending(rank)
        collective = self.collectives.get(index)
        if collective is None:
            collective = self.collectives[index] = _Collective(header, time.monotonic(), group)
        elif collective.op != header["op"] or collective.signature != _Collective(header, 0).signature:
            theirs = _Collective(header, 0).describe()
            first = min(collective.callers)
            self._fail(index, f"{name}: rank {rank} called {theirs} but rank {first} called "
                       f"{collective.describe()}; every rank must make the same collective calls in the same order",
                       extra=[(rank, identity, header["seq"])])
            return
        if rank in collective.callers:
            raise ProtocolError(f"rank {rank} joined {name} twice")
        collective.callers[rank] = (identity, header["seq"])
        self.pending[rank] += 1
        if contributes:
            collective.payloads[group.index[rank]] = parts
            if header["op"] == "allreduce":
                collective.fold_in_rank_order()
        if len(collective.callers) == len(group.members):
            del self.collectives[index]
            self._complete(collective)

    _on_allreduce = _on_broadcast = _on_allgather = _on_barrier = _on_collective

    def _complete(self, collective):
        if collective.op == "allreduce":
            dtype = numpy.dtype(collective.signature["dtype"])
            result = collective.total if collective.total.dtype == dtype else collective.total.astype(dtype)
        elif collective.op == "allgather":
            result = numpy.concatenate([part for r in range(len(collective.group.members))
                                        for part in collective.payloads[r]]
                                       or [numpy.empty(0, collective.signature["dtype"])])
        elif collective.op == "broadcast":
            result = collective.payloads[collective.signature["root"]]  # its parts, handed on as they came
        else:
            result = b""
        digest = protocol.payload_digest(result) if self.signed else None  # hashed once for every rank
        for rank, (identity, seq) in collective.callers.items():
            self.pending[rank] -= 1
            if collective.op == "broadcast" and collective.group.index[rank] == collective.signature["root"]:
                self._reply(identity, {"op": collective.op, "seq": seq})
            else:
                self._reply(identity, {"op": collective.op, "seq": seq}, result, digest)

    def _fail(self, index, message, extra=(), timed_out=None):
        """Answer every caller of collective `index` with `message` (and, for a timeout, its limit in seconds)."""
        collective = self.collectives.pop(index)
        self.failed[index] = message
        self.refused += 1
        log.warning("parameter server: %s", message)
        callers = [(rank, identity, seq) for rank, (identity, seq) in collective.callers.items()] + list(extra)
        for rank in collective.callers:
            self.pending[rank] -= 1
        for rank, identity, seq in callers:
            self._reply(identity, {"op": collective.op, "seq": seq, "error": message,
                                   **({} if timed_out is None else {"timed_out": timed_out})})

    def _expire(self, now):
        for index, collective in list(self.collectives.items()):
            limit = min(self._timeout_of(rank) for rank in collective.callers)
            if now - collective.started > limit:
                missing = sorted(set(collective.group.members) - set(collective.callers))
                within = f" of {collective.group.describe()}" if index[0] else ""
                self._fail(index, f"collective #{index[1]}{within} {collective.describe()} timed out after {limit:g} "
                           f"s: rank(s) {missing} never joined it (joined: {sorted(collective.callers)}); a rank "
                           "crashed, hangs, or ran out of data early (use DistributedSampler so that every rank "
                           "gets the same number of batches)", timed_out=float(limit))
        for key, waiters in list(self.store_waiters.items()):
            for waiter in [w for w in waiters if now > w[3]]:
                waiters.remove(waiter)
                self.pending[waiter[0]] -= 1
                self._reply(waiter[1], {"op": "store_get", "seq": waiter[2],
                                        "error": f"no rank set rendezvous key {key!r} in time"})
            if not waiters:
                del self.store_waiters[key]
        for shard in self.shards.values():
            if shard.resumed and now - shard.resumed_since > self.heartbeat_timeout:
                log.warning("parameter server: rank(s) %s did not register again with %s within %g s of its restart "
                            "from the checkpoint: the other ranks go on without them", shard.forget_resumed(),
                            shard.where, self.heartbeat_timeout)
            shard.expire(now, self._timeout_of)
        for receiver in self.mailboxes.expired(now):
            self.pending[receiver.dst] -= 1
            sender = "any rank" if receiver.src is None else f"rank {receiver.src}"
            limit = receiver.timeout
            self._reply(receiver.identity, {"op": "recv", "seq": receiver.seq, "timed_out": limit,
                                            "error": f"rank {receiver.dst}: no message from {sender} with tag "
                                                     f"{receiver.tag} arrived within {limit:g} s"})


def _peer_address(frames):
    """The address a message came from ("127.0.0.1"), for the log."""
    try:
        return frames[-1].get("Peer-Address") or "an unknown peer"
    except (AttributeError, zmq.ZMQError):
        return "an unknown peer"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m distrain.comm.ps.server",
                                     description="Run a distrain parameter server for one job.")
    parser.add_argument("--world-size", type=int, required=True, help="how many ranks the job has")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555",
                        help="ZeroMQ address to listen on (default tcp://127.0.0.1:5555; beyond loopback needs a secret)")
    parser.add_argument("--secret-file",
                        help=f"file holding the shared secret (else ${protocol.SECRET_ENVIRONMENT_VARIABLE} or "
                             f"${protocol.SECRET_FILE_ENVIRONMENT_VARIABLE}; on loopback without one, the server makes "
                             "one and writes it to a new mode-600 file)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds a collective may wait for its ranks")
    parser.add_argument("--max-message-mb", type=float, default=None,
                        help="the largest payload (one bucket, one broadcast) a rank may send, in MiB (default "
                             f"{protocol.DEFAULT_MAX_MESSAGE_BYTES // 2 ** 20}, or "
                             f"${protocol.MAX_MESSAGE_ENVIRONMENT_VARIABLE}); larger ones are refused")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="asynchronous mode: keep the served parameters and optimizer state in this file, written "
                             "atomically every --checkpoint-every updates; started again with the same file, the "
                             "server resumes from it and the ranks reconnect")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                        help=f"updates between checkpoints (default {server_checkpoint.DEFAULT_EVERY})")
    parser.add_argument("--heartbeat-timeout", type=float, default=None, metavar="SECONDS",
                        help="close the connection of a rank silent this long (no answer to ZeroMQ's heartbeats): "
                             f"asynchronous mode drops it (default {DEFAULT_HEARTBEAT_TIMEOUT:g}, or "
                             f"${HEARTBEAT_ENVIRONMENT_VARIABLE})")
    parser.add_argument("--quiet", action="store_true",
                        help="log only warnings (refusals, failed collectives), not the start and end")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    limit = None if args.max_message_mb is None else int(args.max_message_mb * 2 ** 20)
    try:
        secret = protocol.read_secret_file(args.secret_file) if args.secret_file else None
        server = ParameterServer(args.world_size, args.bind, secret=secret, timeout=args.timeout,
                                 max_message_bytes=limit, heartbeat_timeout=args.heartbeat_timeout,
                                 checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every)
        secret_file = protocol.write_secret_file(server.secret.decode()) if server.secret_generated else None
    except (ValueError, OSError, zmq.ZMQError) as error:
        parser.exit(2, f"distrain parameter server: {error}\n")
    if secret_file is not None:
        log.info("no secret was given: made one and wrote it to %s (mode 600, removed when the server exits). "
                 "Every rank needs it in its environment: %s=%s (or %s=\"$(cat %s)\")", secret_file,
                 protocol.SECRET_FILE_ENVIRONMENT_VARIABLE, secret_file, protocol.SECRET_ENVIRONMENT_VARIABLE,
                 secret_file)
    log.info("serving %d ranks at %s (authenticated: a handshake with the secret%s; messages up to %d MiB)",
             server.world_size, server.address, ", and a MAC on every message" if server.signed else "",
             server.max_message_bytes // 2 ** 20)
    print(server.address, flush=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # so that `finally` runs
    try:
        server.serve(until_all_left=True)
    finally:
        if secret_file is not None:
            os.remove(secret_file)
            os.rmdir(os.path.dirname(secret_file))
    log.info("every rank has left; %d message(s) refused", server.refused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
