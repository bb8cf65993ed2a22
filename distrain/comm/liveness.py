"""Liveness: every rank learns within seconds that another rank died or left, and what each rank waits in.

Collectives alone cannot tell a slow rank from a dead one: a rank waiting in an allreduce
for a peer that was SIGKILLed, or that called `sys.exit(0)` early, would wait out the whole
collective timeout (minutes) and then could only say "someone did not come". So every
job of more than one rank runs a small side channel beside its communicator:

- rank 0 hosts a **hub** (a ZeroMQ ROUTER, in a thread) that every rank's **monitor**
  (a DEALER, in a thread) sends a heartbeat to every `BEAT_SECONDS`. A heartbeat says
  who the rank is (pid, host) and what it is doing: how many collectives it has started,
  and the one it is waiting in, if any, since when.
- The hub marks a rank **lost** when it says goodbye (its exit code or the exception
  that ended it, sent from atexit / the launcher's exception hook), when its process is
  gone (ranks on the hub's own machine: checked by pid every beat, so a SIGKILL is seen
  in under a second), or when it has been silent for `silence` seconds (other machines;
  default 5 s, $DISTRAIN_PEER_SILENCE). Every answer to a heartbeat carries the list of
  lost ranks, so every rank knows within a beat.
- Waits (base.PollingHandle, the ps client's handle) look at `monitor.lost` while they
  poll: a wait that cannot finish because a peer is lost fails after a short grace with an
  error naming that rank, its pid, host and how it ended. A wait that times out asks the
  hub for every rank's state and names the ranks that did not arrive and the collective
  each of them is in.
- If rank 0 itself is lost (its pid gone, or the hub silent for `silence` seconds after
  it had answered), the monitors declare rank 0 lost.

Security (shared/DESIGN.md): the hub is a server the job starts, so it authenticates
every message (HMAC-SHA256 with a fresh per-job secret that rank 0 makes and hands to the
other ranks through the communicator itself, never on a command line), and admits a
monitor's connection only after a handshake with that secret (zap.py: a stranger cannot
make it buffer anything, not even one endless multipart message); messages are
msgpack, never pickle, at most `HUB_MAX_MESSAGE_BYTES` (ZeroMQ drops anything larger
before it is buffered), at most QUEUE_MESSAGES queued per connection, and refused unless
authentic and numbered above the rank's last one.

The cost on the training step: one attribute write per collective started and waited
for; the threads wake twice a second (benchmarks/bench_safety.py measures it).
"""
from __future__ import annotations

import atexit
import os
import secrets
import socket
import sys
import threading
import time

import msgpack
import numpy
import zmq

from . import zap
from ..process_lifetime import process_is_running
from .ps import protocol
from .ps.protocol import ProtocolError

BEAT_SECONDS = 0.5
DEFAULT_SILENCE_SECONDS = 5.0
SILENCE_ENVIRONMENT_VARIABLE = "DISTRAIN_PEER_SILENCE"
HOST_ENVIRONMENT_VARIABLE = "DISTRAIN_LIVENESS_HOST"  # where other machines reach rank 0's hub
QUERY_SECONDS = 2.0
HUB_MAX_MESSAGE_BYTES = 16 * 1024  # a heartbeat is ~200 bytes: ZeroMQ drops larger frames before buffering them
MONITOR_MAX_MESSAGE_BYTES = 8 * 2 ** 20  # the hub's table of every rank, for a timeout's message
QUEUE_MESSAGES = 100  # per peer connection, each way
MAX_RANKS = 2 ** 20  # the longest list of ranks a hub's answer may carry
BOOTSTRAP_BYTES = 1024
_REQUEST, _REPLY = b"liveness-request", b"liveness-reply"  # never confused with parameter-server messages


def _silence_seconds():
    value = os.environ.get(SILENCE_ENVIRONMENT_VARIABLE)
    if not value:
        return DEFAULT_SILENCE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"${SILENCE_ENVIRONMENT_VARIABLE} must be a positive number of seconds, got {value!r}")
    return seconds


def describe_peer(entry):
    """'rank 1 (pid 123 on node7)' for a table entry."""
    return f"rank {entry['rank']} (pid {entry['pid']} on {entry['host']})"


class _Socket:
    """One ZeroMQ socket with authenticated msgpack messages: [body, mac], on a connection whose handshake
    shows the secret (zap.py: the hub's ROUTER reads nothing from a peer before that)."""

    def __init__(self, kind, secret, max_message_bytes):
        self.context = zmq.Context()
        self.socket = self.context.socket(kind)
        for option, value in ((zmq.LINGER, 0), (zmq.MAXMSGSIZE, max_message_bytes), (zmq.RCVHWM, QUEUE_MESSAGES),
                              (zmq.SNDHWM, QUEUE_MESSAGES)):
            self.socket.setsockopt(option, value)
        self.secret = secret
        self.gate = zap.guard(self.socket, secret) if kind == zmq.ROUTER else None  # before bind()
        if self.gate is None:
            zap.present_credentials(self.socket, secret)  # before connect()

    def encode(self, message, direction, items=()):
        """The frames of `message` (a small map) and `items` (the hub's list of ranks, as the payload)."""
        return protocol.pack(message, msgpack.packb(list(items), use_bin_type=True), self.secret, direction)

    def decode(self, frames, direction):
        """(message, items) of authentic frames; ProtocolError otherwise. The items may list every rank of a
        large job, so they are decoded with limits of their own, not a header's."""
        message, parts = protocol.unpack(frames, self.secret, direction)
        try:
            items = msgpack.unpackb(b"".join(bytes(part) for part in parts), raw=False, strict_map_key=True,
                                    max_array_len=MAX_RANKS, max_map_len=16, max_str_len=4096, max_bin_len=64)
        except Exception as error:  # msgpack raises several kinds for garbage
            raise ProtocolError(f"liveness items are not valid msgpack: {error}") from None
        if not isinstance(items, list):
            raise ProtocolError(f"liveness items must be a list, got {type(items).__name__}")
        return message, items

    def close(self):
        self.socket.close(linger=0)
        if self.gate is not None:
            self.gate.stop()  # before term(), which waits for the handler's socket
        self.context.term()


class Hub(threading.Thread):
    """Rank 0's side: collects heartbeats, decides who is lost, answers with the lost list or the whole table."""

    def __init__(self, size, secret, bind, silence):
        super().__init__(name="distrain-liveness-hub", daemon=True)
        self.size = size
        self.silence = silence
        self.channel = _Socket(zmq.ROUTER, secret, HUB_MAX_MESSAGE_BYTES)
        self.channel.socket.bind(bind)
        self.address = self.channel.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.host = socket.gethostname()
        self.ranks = {}  # rank -> latest state (dict), plus "seen" (monotonic) and "lost" (None or how)
        self.refused = 0
        self.stopped = threading.Event()

    def run(self):
        poller = zmq.Poller()
        poller.register(self.channel.socket, zmq.POLLIN)
        next_check = time.monotonic()
        try:
            while not self.stopped.is_set():
                if poller.poll(int(BEAT_SECONDS * 500)):
                    while self.channel.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        self._handle(self.channel.socket.recv_multipart())
                if time.monotonic() >= next_check:
                    self._check_ranks()
                    next_check = time.monotonic() + BEAT_SECONDS / 2
        except zmq.ZMQError:
            if not self.stopped.is_set():
                raise
        finally:
            self.channel.close()

    def stop(self, linger=0.0):
        """Stop serving; first, for up to `linger` seconds, until every rank still running has beaten once more.

        Rank 0 stops its hub when it leaves: the linger lets its own goodbye (and any other
        news) reach the ranks that stay, instead of leaving them to guess from silence.
        """
        since = time.monotonic()
        while time.monotonic() - since < linger and self.is_alive() and any(
                state["lost"] is None and state["seen"] < since for state in list(self.ranks.values())):
            time.sleep(0.02)
        self.stopped.set()
        self.join(timeout=2)

    def _handle(self, frames):
        identity, frames = frames[0], frames[1:]
        try:
            message, _ = self.channel.decode(frames, _REQUEST)
            rank = message.get("rank")
            seq = message.get("seq")
            if not (isinstance(rank, int) and 0 <= rank < self.size and isinstance(seq, int)):
                raise ProtocolError(f"bad rank or seq: {rank!r}, {seq!r}")
            known = self.ranks.get(rank)
            if known is not None and seq <= known["seq"]:
                raise ProtocolError(f"rank {rank}: message {seq} is not newer than {known['seq']} (a replay)")
        except ProtocolError:
            self.refused += 1  # not from this job, or garbage: no answer, no state change
            return
        op = message.get("op")
        if op in ("beat", "bye"):
            self._record(rank, message)
            answer, items = {"op": "lost"}, self._lost_table()
        elif op == "query":
            self._record(rank, message)
            answer, items = {"op": "table"}, self._table()
        else:
            return
        try:  # never blocks the hub: a peer whose queue is full misses this answer, not everyone theirs
            self.channel.socket.send_multipart([identity, *self.channel.encode(answer, _REPLY, items)], zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _record(self, rank, message):
        known = self.ranks.get(rank)
        if known is not None and known["lost"] is not None:
            known["seq"] = message["seq"]
            return  # a lost rank stays lost (its bye may race a last beat)
        state = {key: message.get(key) for key in ("rank", "pid", "host", "started", "waiting", "waiting_since", "seq")}
        state["waiting_for"] = (time.time() - state["waiting_since"]) if state.get("waiting_since") else None
        state["seen"] = time.monotonic()
        state["lost"] = f"{message.get('how')}" if message.get("op") == "bye" else None
        state["lost_at"] = time.time() if state["lost"] is not None else None
        self.ranks[rank] = state

    def _check_ranks(self):
        now = time.monotonic()
        for state in self.ranks.values():
            if state["lost"] is not None:
                continue
            if state["host"] == self.host and not process_is_running(state["pid"]):
                state["lost"] = ("ended without a word (killed by a signal such as SIGKILL or the OOM killer, "
                                 "or os._exit)")
            elif now - state["seen"] > self.silence:
                state["lost"] = (f"went silent (no heartbeat for {self.silence:g} s: its machine or network is down, "
                                 "or the process is stopped or stuck holding the GIL)")
            else:
                continue
            state["lost_at"] = time.time()

    def _lost_table(self):
        return [self._public(state) for state in self.ranks.values() if state["lost"] is not None]

    def _table(self):
        return [self._public(state) for state in self.ranks.values()]

    @staticmethod
    def _public(state):
        return {key: state.get(key) for key in ("rank", "pid", "host", "started", "waiting", "waiting_for", "lost",
                                                "lost_at")} | {"silent_for": time.monotonic() - state["seen"]}


class Monitor(threading.Thread):
    """One rank's side: heartbeats to the hub, the lost ranks it reports, and what this rank is doing."""

    def __init__(self, rank, size, address, secret, hub_rank_pid, hub_host, silence):
        super().__init__(name="distrain-liveness-monitor", daemon=True)
        self.rank = rank
        self.size = size
        self.address = address
        self.silence = silence
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.hub_pid, self.hub_host = hub_rank_pid, hub_host
        self.channel = _Socket(zmq.DEALER, secret, MONITOR_MAX_MESSAGE_BYTES)
        self.channel.socket.connect(address)
        self.lock = threading.Lock()  # the socket is used by this thread, by query() and by goodbye()
        self.seq = 0
        self.started = 0  # collectives this rank has started
        self.waiting = None  # (description, since (time.time())) of the collective this rank waits in
        self.lost = {}  # rank -> table entry, as the hub reported it
        self.heard_from_hub = None  # monotonic time of the last answer
        self.stopped = threading.Event()
        self.gone = False
        self.started_at = time.monotonic()
        self.warned = False

    # -- what the communicator tells it (cheap: attribute writes) ------------------------
    def collective_started(self):
        self.started += 1
        return self.started

    def wait_began(self, what):
        self.waiting = (what, time.time())

    def wait_ended(self):
        self.waiting = None

    # -- the thread -----------------------------------------------------------------------
    def run(self):
        while True:  # the first beat at once: a rank killed right after init is known to the hub
            try:
                answer = self._exchange({"op": "beat"}, BEAT_SECONDS)
            except zmq.ZMQError:
                return  # closed under us
            if answer is not None:
                self._take_lost(answer[1])
            self._check_hub()
            if self.stopped.wait(BEAT_SECONDS):
                return

    def _message(self, op, extra=None):
        self.seq += 1
        waiting = self.waiting
        return {"op": op, "rank": self.rank, "seq": self.seq, "pid": self.pid, "host": self.host,
                "started": self.started, "waiting": waiting[0] if waiting else None,
                "waiting_since": waiting[1] if waiting else None, **(extra or {})}

    def _exchange(self, message, timeout, expect="lost"):
        """Send one message and return the hub's answer to it, (message, items), or None if none came within
        `timeout` seconds. Nothing here blocks longer: an unreachable hub must not hang a rank's exit or its
        error message, so a message that cannot be queued at once is dropped, and an answer of another
        kind (a late one to an earlier message) is skipped.
        """
        deadline = time.monotonic() + timeout
        if not self.lock.acquire(timeout=timeout):
            return None
        try:
            if self.channel.socket.closed:
                return None
            try:
                self.channel.socket.send_multipart(self.channel.encode(self._message(**message), _REQUEST),
                                                   zmq.NOBLOCK)
            except zmq.Again:
                return None  # the hub is not reading (unreachable or gone): this beat is lost, not the rank
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.channel.socket.poll(int(remaining * 1000) + 1):
                    return None
                try:
                    answer = self.channel.decode(self.channel.socket.recv_multipart(), _REPLY)
                except ProtocolError:
                    continue
                self.heard_from_hub = time.monotonic()
                if answer[0].get("op") == expect:
                    return answer
        finally:
            self.lock.release()

    def _take_lost(self, entries):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("rank") != self.rank and entry.get("rank") not in self.lost:
                self.lost[entry["rank"]] = entry

    def _check_hub(self):
        if self.rank == 0 or 0 in self.lost:
            return
        if self.heard_from_hub is None and not self.warned and time.monotonic() - self.started_at > self.silence:
            self.warned = True
            sys.stderr.write(f"distrain: rank {self.rank} cannot reach rank 0's liveness hub at {self.address}: a dead "
                             "peer will be noticed only by the collective timeout. If rank 0 is on another machine, "
                             f"set ${HOST_ENVIRONMENT_VARIABLE} on it to an address this machine can reach\n")
        entry = {"rank": 0, "pid": self.hub_pid, "host": self.hub_host, "lost_at": time.time()}
        if self.hub_host == self.host and not process_is_running(self.hub_pid):
            entry["lost"] = "ended without a word (killed by a signal such as SIGKILL, or os._exit)"
        elif self.heard_from_hub is not None and time.monotonic() - self.heard_from_hub > self.silence:
            entry["lost"] = f"went silent (its hub answered no heartbeat for {self.silence:g} s)"
        else:
            return
        self.lost[0] = entry

    def query(self):
        """Every rank's state as the hub knows it (None if the hub does not answer)."""
        answer = self._exchange({"op": "query"}, QUERY_SECONDS, expect="table")
        return None if answer is None else answer[1]

    def goodbye(self, how):
        """Tell the hub this rank is leaving and how (once; a best effort that waits at most a beat)."""
        if self.gone or os.getpid() != self.pid:
            return  # already said, or a forked child (a data-loader worker) that inherited this object
        self.gone = True
        try:
            self._exchange({"op": "bye", "extra": {"how": how}}, BEAT_SECONDS)
        except zmq.ZMQError:
            pass

    def stop(self):
        self.stopped.set()
        if self.is_alive():
            self.join(timeout=2 * BEAT_SECONDS)
        if self.lock.acquire(timeout=2 * BEAT_SECONDS):  # else the socket is left to the process's end
            try:
                self.channel.close()
            finally:
                self.lock.release()

    # -- what waits use -------------------------------------------------------------------
    def lost_peers_text(self, lost=None):
        """'rank 1 (pid 123 on n7) exited with code 2 3.1 s ago; ...' for the lost ranks (or those of `lost`), or ''."""
        lost = self.lost if lost is None else lost
        parts = []
        for rank in sorted(lost):
            entry = lost[rank]
            ago = f" {time.time() - entry['lost_at']:.1f} s ago" if entry.get("lost_at") else ""
            parts.append(f"{describe_peer(entry)} {entry.get('lost')}{ago}")
        return "; ".join(parts)

    def missing_peers_text(self, index):
        """Which ranks have not arrived at this rank's collective number `index`, and what each is in."""
        table = self.query()
        if table is None:
            return "the liveness hub on rank 0 did not answer, so which ranks are missing is unknown"
        known = {entry["rank"]: entry for entry in table}
        parts, left_since = [], []
        for rank in range(self.size):
            entry = known.get(rank)
            if rank == self.rank:
                continue
            if entry is None:
                parts.append(f"rank {rank} never sent a heartbeat")
            elif (entry.get("started") or 0) >= index:  # it has started this collective: it arrived
                if entry.get("lost"):  # and left since (e.g. its own wait timed out a moment earlier, or it died in it)
                    left_since.append(f"{describe_peer(entry)} {entry['lost']}")
            elif entry.get("lost"):
                parts.append(f"{describe_peer(entry)} {entry['lost']}")
            elif entry.get("waiting"):
                parts.append(f"{describe_peer(entry)} has started only {entry['started']} collectives and waits in "
                             f"{entry['waiting']} for {entry['waiting_for']:.0f} s")
            else:
                parts.append(f"{describe_peer(entry)} has started only {entry['started']} collectives and waits in "
                             f"none (busy outside distrain; last heard {entry['silent_for']:.1f} s ago)")
        left = f"; ranks that arrived at it and have left since: {'; '.join(left_since)}" if left_since else ""
        if not parts:
            return "every rank has started this collective (a slow network or a very large buffer?)" + left
        return f"ranks that have not arrived at collective #{index}: " + "; ".join(parts) + left


class Liveness:
    """A communicator's liveness: the monitor of this rank and, on rank 0, the hub."""

    def __init__(self, monitor, hub=None):
        self.monitor = monitor
        self.hub = hub
        self.pid = os.getpid()
        atexit.register(self._at_exit)

    def _at_exit(self):
        self.close("exited")

    def close(self, how="closed its process group"):
        if os.getpid() != self.pid:
            return  # a forked child (a data-loader worker): the threads, sockets and locks are the parent's
        self.monitor.goodbye(how)
        self.monitor.stop()
        if self.hub is not None:
            self.hub.stop(linger=2 * BEAT_SECONDS + 0.1)
        atexit.unregister(self._at_exit)


_current = []  # the live Liveness objects of this process (for goodbye from the launcher's exception hook)


def say_goodbye(how):
    """Tell every peer how this process is ending (the launcher calls this before os._exit)."""
    for liveness in list(_current):
        liveness.monitor.goodbye(how)


def _hub_bind_address(comm):
    if comm.local_size == comm.size:
        return "tcp://127.0.0.1:0", "127.0.0.1"
    host = os.environ.get(HOST_ENVIRONMENT_VARIABLE)
    if not host:
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError as error:
            raise OSError(f"rank 0 cannot tell the other machines where its liveness hub listens: its host name "
                          f"{socket.gethostname()!r} does not resolve ({error}); set ${HOST_ENVIRONMENT_VARIABLE} "
                          "to an address of this machine that the others can reach") from None
    return "tcp://*:0", host


def attach(comm):
    """Start the liveness side channel of `comm` (a collective: every rank calls it once); None for one rank."""
    if comm.size == 1:
        return None
    silence = _silence_seconds()
    bootstrap = numpy.zeros(BOOTSTRAP_BYTES, dtype=numpy.uint8)
    hub = None
    if comm.rank == 0:
        bind, host = _hub_bind_address(comm)
        hub = Hub(comm.size, secrets.token_bytes(32), bind, silence)
        port = hub.address.rsplit(":", 1)[1]
        info = msgpack.packb({"address": f"tcp://{host}:{port}", "secret": hub.channel.secret, "pid": os.getpid(),
                              "host": socket.gethostname()}, use_bin_type=True)
        bootstrap[:len(info)] = numpy.frombuffer(info, dtype=numpy.uint8)
        hub.start()
    comm.broadcast(bootstrap, root=0)
    try:
        unpacker = msgpack.Unpacker(raw=False, max_bin_len=64, max_str_len=256, max_map_len=8)
        unpacker.feed(bootstrap.tobytes())
        info = next(unpacker)
        address, secret, pid, host = info["address"], info["secret"], int(info["pid"]), info["host"]
    except Exception as error:  # garbage from the broadcast: say so instead of a KeyError
        raise ProtocolError(f"rank {comm.rank}: the liveness bootstrap from rank 0 is unreadable ({error})") from None
    monitor = Monitor(comm.rank, comm.size, address, secret, pid, host, silence)
    monitor.start()
    liveness = Liveness(monitor, hub)
    _current.append(liveness)
    return liveness


def detach(liveness, how="closed its process group"):
    if liveness is None:
        return
    if liveness in _current:
        _current.remove(liveness)
    liveness.close(how)
