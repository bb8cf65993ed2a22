"""Connection-level authentication (distrain/comm/zap.py): a stranger gets no message read, however it streams.

ZeroMQ's MAXMSGSIZE limits each frame, not a multipart message, and ZeroMQ buffers a
multipart message whole before handing it over: before the handshake was required, a raw
peer sending 1 MiB frames of one message that never ends grew the parameter server by
1.5 GB in 1500 frames, and 16 KiB frames did the same to the liveness hub, whose frame
limit is 16 KiB; and a handshake command just under the server's old frame limit (the
whole message, 256 MiB) was buffered whole, once per connection. These tests speak raw ZMTP 3.0 (ZeroMQ's wire protocol) over a TCP
socket, as such a peer would, against the server's command line and a hub in their own
processes, so that the peak memory (VmHWM) measured is theirs alone.
"""
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import zmq

from distrain.comm import liveness, zap
from distrain.comm.ps import client, protocol
from distrain.comm.ps.client import PSCommunicator
from distrain.comm.ps.server import ParameterServer

from .test_ps import first_line, killed_on_failure

from .test_security_memory import REPO, SECRET, allreduce_on_two_ranks, peak_memory_bytes, server_process

MIB = 2 ** 20
GROWTH_BOUND = 64 * MIB  # what a stranger may add to a server's peak memory, whatever it sends
HUB_SCRIPT = textwrap.dedent("""
    import os, sys
    from distrain.comm import liveness
    hub = liveness.Hub(2, os.environb[b"HUB_SECRET"], "tcp://127.0.0.1:0", 60.0)
    hub.start()
    print(hub.address, flush=True)
    sys.stdin.read()  # until the test closes it
    hub.stop()
""")


def _command(name, body=b""):
    """A ZMTP command frame (short form: the commands a handshake needs are short)."""
    data = bytes([len(name)]) + name + body
    return b"\x04" + bytes([len(data)]) + data


def _property(name, value):
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


# what a raw peer sends after its 64-byte greeting, before streaming the frames of its endless message
HANDSHAKES = {
    "NULL (a ZeroMQ socket without credentials)": (b"NULL", _command(b"READY", _property(b"Socket-Type", b"DEALER"))),
    "PLAIN without a HELLO": (b"PLAIN", b""),
    "PLAIN with a wrong password": (b"PLAIN", _command(b"HELLO", b"\x04user\x08password") +
                                    _command(b"INITIATE", _property(b"Socket-Type", b"DEALER"))),
    # ZeroMQ reads a command whole before checking it: only the frame limit (protocol.FRAME_BYTES) bounds it,
    # so the server's limit is one frame, not one message (255 MiB was under the old one-frame message limit)
    "a 255 MiB handshake command": (b"PLAIN", b"\x06" + struct.pack(">Q", 255 * MIB)),  # its bytes are the stream
}


def stream_endless_message(port, mechanism, handshake, frame_bytes, budget_bytes, seconds):
    """As a raw peer, send `handshake` then frames of one message that never ends (each with the MORE flag),
    reconnecting whenever dropped, until `budget_bytes` are sent or `seconds` pass; the bytes sent."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" * 32
    frame = (b"\x03" + struct.pack(">Q", frame_bytes) if frame_bytes > 255 else b"\x01" + bytes([frame_bytes])) + \
        b"\x01" * frame_bytes
    sent, deadline = 0, time.monotonic() + seconds
    while sent < budget_bytes and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as peer:
                peer.sendall(greeting + handshake)
                while sent < budget_bytes and time.monotonic() < deadline:
                    peer.sendall(frame)
                    sent += frame_bytes
        except OSError:  # dropped (reset, broken pipe) or stalled: try again, as an attacker would
            time.sleep(0.01)
    return sent


def port_of(address):
    return int(address.rsplit(":", 1)[1])


@pytest.mark.timeout(120)
def test_an_endless_message_from_a_stranger_leaves_the_server_small_and_serving(tmp_path):
    with server_process(tmp_path, 2) as (server, address):
        before = peak_memory_bytes(server.pid)
        for name, (mechanism, handshake) in HANDSHAKES.items():
            stream_endless_message(port_of(address), mechanism, handshake, MIB, 512 * MIB, seconds=3.0)
            peak = peak_memory_bytes(server.pid)
            assert peak - before < GROWTH_BOUND, \
                f"{name}: the server grew from {before / MIB:.0f} to {peak / MIB:.0f} MiB"
            assert server.poll() is None, f"{name}: the server died"
        outcomes = allreduce_on_two_ranks(address, SECRET, 1000)
    assert [outcomes[rank].tolist() for rank in range(2)] == [[3.0 * i for i in range(1000)]] * 2, outcomes


@contextlib.contextmanager
def hub_process(secret):
    environment = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    environment["HUB_SECRET"] = secret.decode()
    process = subprocess.Popen([sys.executable, "-c", HUB_SCRIPT], env=environment, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    with killed_on_failure(process):
        yield process, first_line(process, 20)


@pytest.mark.timeout(120)
def test_an_endless_message_from_a_stranger_leaves_the_liveness_hub_small_and_serving():
    secret = b"a-test-secret-for-the-liveness-hub-0"
    with hub_process(secret) as (hub, address):
        before = peak_memory_bytes(hub.pid)
        for name, (mechanism, handshake) in HANDSHAKES.items():
            # frames under the hub's 16 KiB frame limit: the limit alone would let each of them in
            stream_endless_message(port_of(address), mechanism, handshake, 8 * 1024, 256 * MIB, seconds=3.0)
            peak = peak_memory_bytes(hub.pid)
            assert peak - before < GROWTH_BOUND, f"{name}: the hub grew from {before / MIB:.0f} to {peak / MIB:.0f} MiB"
            assert hub.poll() is None, f"{name}: the hub died"
        monitor = liveness.Monitor(1, 2, address, secret, hub.pid, socket.gethostname(), 60.0)
        try:
            table = monitor.query()
        finally:
            monitor.channel.close()
    assert table is not None and [entry["rank"] for entry in table] == [1], table


def test_the_password_is_derived_from_the_secret_never_the_secret_and_differs_per_user_name():
    first, second = (zap.connection_password(SECRET.encode(), name) for name in (b"a" * 32, b"b" * 32))
    assert first != second and len(first) == 64 and SECRET.encode() not in first
    assert first == zap.connection_password(SECRET.encode(), b"a" * 32)
    assert first != zap.connection_password(b"another-secret-of-another-job", b"a" * 32)


@contextlib.contextmanager
def dealer(address, username, password, source=None):
    """A raw DEALER presenting these PLAIN credentials; from the IP `source` when given (another machine)."""
    context = zmq.Context()
    peer = context.socket(zmq.DEALER)
    try:
        peer.setsockopt(zmq.LINGER, 0)
        peer.plain_username, peer.plain_password = username, password
        peer.connect(address if source is None else address.replace("tcp://", f"tcp://{source}:0;"))
        yield peer
    finally:
        peer.close(linger=0)
        context.term()


def wait_until(condition, what, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.01)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bind", ["tcp://127.0.0.1:0", "tcp://0.0.0.0:0"], ids=["loopback", "beyond loopback"])
def test_a_wrong_or_spent_password_gets_nothing_even_with_a_signed_message(bind, monkeypatch):
    """A peer whose handshake fails gets no answer even to a message signed with the secret; a password read off
    the wire is spent for any other address (here 127.0.0.2, another machine as the server sees it), while the
    rank's own address may reconnect with it, as ZeroMQ does by itself after a dropped connection."""
    secret = SECRET.encode()
    hello = protocol.pack({"op": "hello", "rank": 0, "seq": 0}, b"", secret)
    server = ParameterServer(1, bind=bind, secret=secret).start()
    address = server.address.replace("0.0.0.0", "127.0.0.1")
    try:
        comm = PSCommunicator(address, 0, 1, secret=secret, timeout=5.0)
        try:
            sniffed = comm.connection.socket.plain_username, comm.connection.socket.plain_password
            wrong = (b"u" * 32, zap.connection_password(b"the-secret-of-another-job-0", b"u" * 32))
            for (username, password), source in ((wrong, None), ((b"u" * 32, b"a guess"), None), (sniffed, "127.0.0.2")):
                refused = server.refused_handshakes
                with dealer(address, username, password, source) as peer:
                    peer.send_multipart(hello)
                    wait_until(lambda: server.refused_handshakes > refused, "the handshake being refused")
                    assert not peer.poll(300), f"a peer with user name {username!r} got an answer"
            assert server.refused == 0, "a message from a refused peer reached the server"
            with dealer(address, *sniffed) as again:  # the rank's own address, reconnecting: admitted
                again.send_multipart(hello)
                assert again.poll(5000), "a reconnection from the rank's own address was refused"
                protocol.unpack(again.recv_multipart(), secret, protocol.REPLY)  # the server's signed answer
            array = np.array([1.0, 2.0])
            comm.allreduce(array)  # the rank whose password was replayed is still served
            assert array.tolist() == [1.0, 2.0]
        finally:
            comm.close()
    finally:
        server.close()


@pytest.mark.timeout(60)
def test_a_wrong_password_gets_nothing_from_the_liveness_hub_even_with_a_signed_heartbeat():
    secret = b"h" * 32
    hub = liveness.Hub(2, secret, "tcp://127.0.0.1:0", 60.0)
    hub.start()
    try:
        beat = {"op": "beat", "rank": 1, "seq": 1, "pid": os.getpid(), "host": socket.gethostname(), "started": 0,
                "waiting": None, "waiting_since": None}
        header, _, mac = protocol.pack(beat, b"", secret, liveness._REQUEST)
        username = b"u" * 32
        with dealer(hub.address, username, zap.connection_password(b"x" * 32, username)) as peer:
            peer.send_multipart([header, mac])
            wait_until(lambda: hub.channel.gate.refused >= 1, "the handshake being refused")
            assert not peer.poll(300), "a peer with a wrong password got an answer"
        assert hub.ranks == {} and hub.refused == 0
    finally:
        hub.stop()


@pytest.mark.parametrize("bind, signed", [("tcp://127.0.0.1:0", False), ("tcp://0.0.0.0:0", True)],
                         ids=["loopback: no MAC", "beyond loopback: a MAC on every message"])
def test_messages_carry_a_mac_only_beyond_loopback_and_the_hello_answer_always(bind, signed, monkeypatch):
    sent = []
    original = protocol.pack

    def recording_pack(header, payload=b"", secret=None, direction=protocol.REQUEST, digest=None, signed=True):
        frames = original(header, payload, secret, direction, digest, signed)
        sent.append((header.get("op"), direction, len(frames[2])))
        return frames

    monkeypatch.setattr(protocol, "pack", recording_pack)
    monkeypatch.setattr(client, "SERVER_GRACE_SECONDS", 1.0)
    with contextlib.closing(ParameterServer(2, bind=bind, secret=SECRET).start()) as server:
        assert server.signed is signed
        outcomes = allreduce_on_two_ranks(server.address.replace("0.0.0.0", "127.0.0.1"), SECRET, 10)
    assert [outcomes[rank].tolist() for rank in range(2)] == [(np.arange(10.0) * 3).tolist()] * 2
    hellos = [mac for op, _, mac in sent if op == "hello"]
    others = {(op, direction, mac) for op, direction, mac in sent if op != "hello"}
    assert hellos == [32] * 4, sent  # two requests, two answers: always signed
    assert {op for op, _, _ in others} == {"join", "allreduce", "bye"}, others
    assert {mac for _, _, mac in others} == {32 if signed else 0}, others
    assert {direction for _, direction, _ in others} == {protocol.REQUEST, protocol.REPLY}, others


@pytest.mark.timeout(60)
def test_a_forked_child_stopping_the_handshake_handler_neither_hangs_nor_touches_the_parents():
    """A data-loader worker forked from rank 0 inherits the hub's handler object; stopping it there (as its
    __del__ does at a child's normal exit) used to wait forever for a thread that exists only in the parent."""
    secret = b"f" * 32
    hub = liveness.Hub(2, secret, "tcp://127.0.0.1:0", 60.0)
    hub.start()
    try:
        with warnings.catch_warnings():  # Python 3.12 warns of fork() in a process with threads: that is the case
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                hub.channel.gate.stop()
            finally:
                os._exit(0)
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung stopping the handshake handler")
            time.sleep(0.02)
        monitor = liveness.Monitor(1, 2, hub.address, secret, os.getpid(), socket.gethostname(), 60.0)
        try:
            table = monitor.query()
        finally:
            monitor.channel.close()
        assert table is not None and [entry["rank"] for entry in table] == [1], table
    finally:
        hub.stop()
