"""The liveness side channel (comm/liveness.py): lost peers are known within seconds, timeouts name who is missing.

In this process: a hub and monitors on loopback, as attach() starts them for a job (the
monitors of "other ranks" are threads here, so a vanished pid is a finished subprocess's).
A goodbye, a vanished pid, and $DISTRAIN_PEER_SILENCE seconds of silence each mark a rank
lost at every other monitor within about a beat, and a wait watching it (base.PeerWatch)
fails LOST_GRACE_SECONDS later naming the rank, its pid and host and how it ended. The
hub is a server a job starts, so: a message without the job's secret or with an old
number changes nothing and gets no answer, and a frame over MAX_MESSAGE_BYTES is dropped
by ZeroMQ before it is buffered (HUB_MAX_MESSAGE_BYTES), the hub serving on.

For real ranks (launcher, 3 ranks): a collective timeout names the ranks that did not
arrive, each one's pid, and the collective it waits in, or "none".

Before issue 10 there was no side channel: none of this existed, and a collective timeout
said only that "some of the N ranks did not join it".
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import zmq
import zmq.utils.monitor

from distrain.comm import liveness
from distrain.comm.base import LOST_GRACE_SECONDS, PeerWatch

from ..launch.test_spawn import launcher_command, run

HOST = socket.gethostname()
SECRET = b"s" * 32
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "liveness_timeout_script.py")


def wait_for(condition, seconds, what):
    """Poll `condition()` every 10 ms; the seconds it took, or fail after `seconds`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - start


class World:
    """A hub and `size` monitors in this process, torn down at the end of the test."""

    def __init__(self):
        self.hub = None
        self.monitors = []
        self.sockets = []

    def start(self, size, silence=liveness.DEFAULT_SILENCE_SECONDS, pids=None, ranks=None):
        """The monitors of `ranks` (default: all), whose pids are `pids` (default: this process's)."""
        self.hub = liveness.Hub(size, SECRET, "tcp://127.0.0.1:0", silence)
        self.hub.start()
        ranks = range(size) if ranks is None else ranks
        for rank in ranks:
            monitor = liveness.Monitor(rank, size, self.hub.address, SECRET, os.getpid(), HOST, silence)
            monitor.pid = (pids or {}).get(rank, os.getpid())  # what this "rank" says its process is
            monitor.start()
            self.monitors.append(monitor)
        wait_for(lambda: len(self.hub.ranks) == len(ranks), 5, "every monitor's first heartbeat")
        return self.monitors

    def raw_socket(self, secret=SECRET):
        """A DEALER to the hub that sends whatever frames a test makes (a forger, a replayer)."""
        channel = liveness._Socket(zmq.DEALER, secret, liveness.MONITOR_MAX_MESSAGE_BYTES)
        channel.socket.connect(self.hub.address)
        self.sockets.append(channel)
        return channel

    def close(self):
        for monitor in self.monitors:
            monitor.stopped.set()
        for monitor in self.monitors:
            monitor.stop()
        for channel in self.sockets:
            channel.close()
        if self.hub is not None:
            self.hub.stop()


@pytest.fixture
def world():
    made = World()
    yield made
    made.close()


def answered(channel, seconds=1.0):
    """The hub's answer on `channel`, or None when none came within `seconds`."""
    if not channel.socket.poll(int(seconds * 1000)):
        return None
    return channel.decode(channel.socket.recv_multipart(), liveness._REPLY)[0]


def beat(rank, seq, **fields):
    return {"op": "beat", "rank": rank, "seq": seq, "pid": os.getpid(), "host": HOST, "started": 0, "waiting": None,
            "waiting_since": None, **fields}


@pytest.mark.timeout(30)
def test_a_goodbye_reaches_every_other_rank_within_a_beat_and_a_wait_on_it_fails_naming_it(world):
    monitors = world.start(3)
    monitors[1].goodbye("exited with code 2 (sys.exit)")
    seconds = wait_for(lambda: 1 in monitors[0].lost and 1 in monitors[2].lost, 5, "rank 1's goodbye")
    assert seconds < 3 * liveness.BEAT_SECONDS, f"the goodbye took {seconds:.2f} s to reach the other ranks"
    for monitor in (monitors[0], monitors[2]):
        entry = monitor.lost[1]
        assert (entry["rank"], entry["pid"], entry["host"], entry["lost"]) == (
            1, os.getpid(), HOST, "exited with code 2 (sys.exit)")
        assert list(monitor.lost) == [1]
    assert monitors[1].lost == {}  # a rank does not list itself

    class Rank2:  # what PeerWatch reads of a communicator
        rank, size, monitor = 2, 3, monitors[2]

    with PeerWatch(Rank2, "barrier", 7) as watch:
        assert monitors[2].waiting[0] == "barrier (collective #7)"  # what the hub shows the other ranks
        waited = wait_for(watch.peer_lost, 5, "the wait noticing rank 1 is lost")
    assert monitors[2].waiting is None
    assert LOST_GRACE_SECONDS - 0.05 <= waited < LOST_GRACE_SECONDS + 1.0, waited  # a grace, no more
    message = str(watch.lost_error())
    assert message.startswith(f"rank 2: barrier (collective #7) cannot complete: rank 1 (pid {os.getpid()} on {HOST}) "
                              "exited with code 2 (sys.exit)"), message


@pytest.mark.timeout(30)
def test_a_rank_whose_process_is_gone_is_lost_within_a_second(world):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # reaped: its pid names no process now
    start = time.monotonic()
    monitors = world.start(2, pids={1: finished.pid})
    seconds = wait_for(lambda: 1 in monitors[0].lost, 5, "the vanished rank 1")
    assert seconds < 2.0, seconds
    entry = monitors[0].lost[1]
    assert entry["pid"] == finished.pid and entry["lost"].startswith("ended without a word"), entry
    assert time.monotonic() - start < 5


@pytest.mark.timeout(30)
def test_a_silent_rank_is_lost_after_the_silence_the_environment_sets(world, monkeypatch):
    monkeypatch.setenv(liveness.SILENCE_ENVIRONMENT_VARIABLE, "1.5")
    monitors = world.start(3, silence=liveness._silence_seconds())
    assert world.hub.silence == 1.5
    monitors[2].stopped.set()  # rank 2 stops sending heartbeats, its process still alive (stopped, or hung)
    monitors[2].join(timeout=5)
    silent_since = time.monotonic()
    seconds = wait_for(lambda: 2 in monitors[0].lost and 2 in monitors[1].lost, 10, "the silent rank 2")
    assert 1.5 - liveness.BEAT_SECONDS <= seconds < 1.5 + 4 * liveness.BEAT_SECONDS, seconds
    assert re.fullmatch(r"went silent \(no heartbeat for 1\.5 s: .*\)", monitors[1].lost[2]["lost"]), monitors[1].lost[2]
    assert re.search(r"went silent \(.*\) \d+\.\d s ago$", monitors[1].lost_peers_text()), monitors[1].lost_peers_text()
    assert 0 not in monitors[1].lost and 1 not in monitors[0].lost  # the others still beat
    assert time.monotonic() - silent_since >= 1.5 - liveness.BEAT_SECONDS


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_silence_setting_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(liveness.SILENCE_ENVIRONMENT_VARIABLE, value)
    with pytest.raises(ValueError, match=r"\$DISTRAIN_PEER_SILENCE must be a positive number of seconds"):
        liveness._silence_seconds()


@pytest.mark.timeout(30)
def test_messages_without_the_secret_or_with_an_old_number_change_nothing(world):
    world.start(3, ranks=[0, 1])  # rank 2's messages come from this test
    refused = world.hub.refused
    forger = world.raw_socket(secret=b"x" * 32)
    forger.socket.send_multipart(forger.encode(beat(2, 1), liveness._REQUEST))
    forger.socket.send_multipart(forger.encode({**beat(1, 10 ** 6), "op": "bye", "how": "forged"}, liveness._REQUEST))
    assert answered(forger) is None  # no answer to a stranger
    wait_for(lambda: world.hub.channel.gate.refused >= 1, 5, "the forger's handshake being refused")  # zap.py
    assert world.hub.refused == refused  # so its messages never reached the hub's code
    assert 2 not in world.hub.ranks and world.hub.ranks[1]["lost"] is None and world.hub.ranks[1]["seq"] < 10 ** 6

    # an authentic message is refused when replayed: the hub keeps each rank's last number
    sender = world.raw_socket()
    first = sender.encode(beat(2, 7, waiting="allreduce (collective #3)", waiting_since=time.time()),
                          liveness._REQUEST)
    sender.socket.send_multipart(first)
    assert answered(sender)["op"] == "lost"
    assert world.hub.ranks[2]["waiting"] == "allreduce (collective #3)"
    sender.socket.send_multipart(sender.encode(beat(2, 8), liveness._REQUEST))
    assert answered(sender)["op"] == "lost"
    state = dict(world.hub.ranks[2])
    refused = world.hub.refused
    sender.socket.send_multipart(first)  # a replay of the first, byte for byte
    assert answered(sender) is None
    wait_for(lambda: world.hub.refused == refused + 1, 5, "the replay being refused")
    assert world.hub.ranks[2]["waiting"] is None and world.hub.ranks[2]["seq"] == state["seq"] == 8


@pytest.mark.timeout(30)
def test_a_frame_over_the_size_limit_is_dropped_unread_and_the_hub_serves_on(world):
    monitors = world.start(2)
    refused = world.hub.refused
    flooder = world.raw_socket()
    events = flooder.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        huge = b"\0" * (32 * 2 ** 20)
        for _ in range(3):
            flooder.socket.send_multipart([huge, b"m" * 32])
        assert events.poll(5000), "the hub did not drop the connection that sent frames over its limit"
        event = zmq.utils.monitor.recv_monitor_message(events)
        assert event["event"] == zmq.EVENT_DISCONNECTED
    finally:
        flooder.socket.disable_monitor()
        events.close(linger=0)
    small = world.raw_socket()
    small.socket.send_multipart([b"\0" * (liveness.HUB_MAX_MESSAGE_BYTES // 2), b"m" * 32])  # garbage under the limit
    wait_for(lambda: world.hub.refused == refused + 1, 5, "the garbage under the limit being refused")
    time.sleep(0.5)
    assert world.hub.refused == refused + 1  # the huge frames never reached the hub's code
    assert world.hub.is_alive()
    heard = monitors[1].heard_from_hub
    wait_for(lambda: monitors[1].heard_from_hub != heard, 5, "the hub answering a heartbeat after the flood")
    assert monitors[1].query() is not None and monitors[0].lost == {}


@pytest.mark.timeout(30)
def test_attach_starts_the_side_channel_with_a_secret_handed_over_the_communicator(monkeypatch):
    """attach() is what create_communicator calls: rank 0 starts the hub and broadcasts its address and a fresh
    secret; every rank's monitor then heartbeats to it. A world of one needs none."""
    monkeypatch.setenv(liveness.SILENCE_ENVIRONMENT_VARIABLE, "2")
    shared = {"ready": threading.Event()}

    class InProcessRank:
        """Rank `rank` of an in-process world: broadcast hands rank 0's bytes to the others (all attach needs)."""

        def __init__(self, rank, size):
            self.rank, self.size, self.local_size = rank, size, size

        def broadcast(self, array, root=0):
            if self.rank == root:
                shared["bootstrap"] = array.copy()
                shared["ready"].set()
            else:
                assert shared["ready"].wait(10)
                array[...] = shared["bootstrap"]
            return array

    assert liveness.attach(InProcessRank(0, 1)) is None
    attached = []
    try:
        for rank in range(2):
            attached.append(liveness.attach(InProcessRank(rank, 2)))
        hub = attached[0].hub
        assert attached[1].hub is None and hub.silence == 2.0
        assert hub.address.startswith("tcp://127.0.0.1:")  # every rank on this machine: loopback only
        assert len(hub.channel.secret) == 32  # a fresh random secret per job (secrets.token_bytes)
        assert attached[1].monitor.channel.secret == hub.channel.secret
        wait_for(lambda: sorted(hub.ranks) == [0, 1], 5, "both ranks' heartbeats")
        table = attached[1].monitor.query()
        assert sorted((entry["rank"], entry["pid"], entry["host"]) for entry in table) == [
            (0, os.getpid(), HOST), (1, os.getpid(), HOST)]
        liveness.detach(attached.pop(), "closed its process group")
        wait_for(lambda: 1 in attached[0].monitor.lost, 5, "rank 1's goodbye at detach")
        assert attached[0].monitor.lost[1]["lost"] == "closed its process group"
    finally:
        for made in attached:
            liveness.detach(made)


# -- collective timeouts on real ranks ---------------------------------------------------------------------------------

def communicator_errors(output):
    """rank -> the text of the CommunicatorError each rank printed."""
    return {int(rank): text for rank, text in re.findall(r"CommunicatorError: rank (\d+): (.*)$", output, re.MULTILINE)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend, where", [("mpi", "outside"), ("ps", "outside"), ("mpi", "elsewhere")])
def test_a_collective_timeout_names_the_ranks_that_did_not_arrive_and_what_each_waits_in(backend, where):
    """`elsewhere` runs on MPI only: on the parameter server a collective's time limit is its callers' shortest, so
    rank 2's allreduce (joined by rank 0) would fail at the same instant as rank 0's barrier, not wait on."""
    flags = ["--backend", backend] if backend != "mpi" else []
    code, stdout, stderr, _ = run(launcher_command(SCRIPT, 3, *flags, args=[where]), timeout=50)
    output = stdout + stderr
    assert code == 1, output
    pids = {int(r): int(p) for r, p in re.findall(r"ready (\d+) (\d+)$", output, re.MULTILINE)}
    hosts = dict(re.findall(r"about (\d+) (\S+)$", output, re.MULTILINE))
    assert sorted(pids) == [0, 1, 2], output

    def named(rank):
        return re.escape(f"rank {rank} (pid {pids[rank]} on {hosts[str(rank)]})")

    errors = communicator_errors(output)
    # rank 0 times out first; on the parameter server rank 1's barrier, given the same limit, may fail in the same instant
    reporters = [rank for rank in ((0, 1) if backend == "ps" else (0,)) if rank in errors]
    assert reporters, output
    reporter = reporters[0]
    error = errors[reporter]
    assert "(the collective timeout: distrain.distributed.init(timeout=...))" in error, error
    match = re.search(r"barrier \(collective #(\d+)\) did not complete within 3 s", error)
    assert match, error
    index = int(match.group(1))
    if where == "outside":
        assert re.search(f"ranks that have not arrived at collective #{index}: {named(2)} has started only "
                         f"{index - 1} collectives and waits in none", error), error
        not_arrived = error.split("ranks that arrived at it and have left since")[0]  # the other may have left since
        assert f"rank {1 - reporter} (pid" not in not_arrived, error  # the other rank in the barrier arrived
    else:
        assert re.search(f"{named(1)} has started only {index - 2} collectives and waits in none", error), error
        assert re.search(f"{named(2)} has started only {index - 1} collectives and waits in allreduce[^;]* "
                         f"\\(collective #{index - 1}\\)", error), error


@pytest.mark.timeout(30)
def test_a_monitor_whose_hub_is_unreachable_never_blocks_a_goodbye_or_a_query(monkeypatch):
    """Heartbeats to a hub that is not there must not fill the socket and then hang: the rank's exit (goodbye) and
    its timeout message (query) still return within their own limits (before: a blocking send on a DEALER with no
    peer hung the monitor thread while it held the lock, and with it every goodbye and query)."""
    monkeypatch.setattr(liveness, "QUEUE_MESSAGES", 2)  # the queue fills after two beats, not a hundred
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    monitor = liveness.Monitor(1, 2, address, SECRET, os.getpid(), HOST, liveness.DEFAULT_SILENCE_SECONDS)
    monitor.start()
    try:
        time.sleep(3 * liveness.BEAT_SECONDS)  # several heartbeats into the void
        start = time.monotonic()
        assert monitor.query() is None
        monitor.goodbye("exited with code 0")
        assert time.monotonic() - start < liveness.QUERY_SECONDS + 2 * liveness.BEAT_SECONDS + 1
        assert "did not answer" in monitor.missing_peers_text(3)
    finally:
        start = time.monotonic()
        monitor.stop()
        assert time.monotonic() - start < 3 * liveness.BEAT_SECONDS


@pytest.mark.timeout(30)
def test_the_table_of_a_job_of_many_ranks_reaches_a_query(world):
    """A timeout's message needs every rank's state: with 300 ranks the hub's answer holds 300 entries (before, the
    answer was decoded with a header's limits, 256 items, and the query said the hub did not answer)."""
    size = 300
    world.start(size, ranks=[0])
    sender = world.raw_socket()
    for rank in range(1, size):
        sender.socket.send_multipart(sender.encode(beat(rank, 1), liveness._REQUEST))
        assert answered(sender, seconds=5)["op"] == "lost"
    table = world.monitors[0].query()
    assert sorted(entry["rank"] for entry in table) == list(range(size))
    text = world.monitors[0].missing_peers_text(1)
    assert text.startswith("ranks that have not arrived at collective #1: rank 1 (pid"), text
    assert text.count("has started only 0 collectives") == size - 1, text


@pytest.mark.timeout(30)
def test_a_rank_that_arrived_and_left_since_is_not_named_as_missing(world):
    """Two ranks wait in collective #2 with the same time limit: the one whose wait ends first says goodbye, and the
    other's query must still count it as arrived (before: any rank that had left was listed as not arrived, so the
    message blamed a rank that was in the collective; a ps test failed about 1 run in 20 on it)."""
    world.start(3, ranks=[0])
    sender = world.raw_socket()
    sender.socket.send_multipart(sender.encode(beat(1, 1, started=2), liveness._REQUEST))
    assert answered(sender, seconds=5)["op"] == "lost"
    sender.socket.send_multipart(sender.encode(
        beat(1, 2, started=2, op="bye", how="raised CommunicatorError: barrier timed out"), liveness._REQUEST))
    assert answered(sender, seconds=5)["op"] == "lost"
    other = world.raw_socket()
    other.socket.send_multipart(other.encode(beat(2, 1, started=1), liveness._REQUEST))
    assert answered(other, seconds=5)["op"] == "lost"
    text = world.monitors[0].missing_peers_text(2)
    assert text.startswith("ranks that have not arrived at collective #2: rank 2 (pid"), text
    assert "has started only 1 collectives" in text, text
    assert text.endswith("ranks that arrived at it and have left since: rank 1 (pid "
                         f"{os.getpid()} on {HOST}) raised CommunicatorError: barrier timed out"), text
