"""Bounded memory before authentication, and bounded queues after it.

A peer without the secret must not make the server buffer a gigabyte before its MAC is
checked: ZeroMQ is told the largest frame the server takes, and drops a peer announcing
a larger one before buffering it. The server here runs as its own process (the command
line), so that its peak memory (VmHWM) is its own. Ranks learn the limit from the server
and refuse, before sending, a payload over it; a rank may only have so many collectives
waiting for the others.
"""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from distrain.comm.base import CommunicatorError
from distrain.comm.ps import protocol, server as server_module
from distrain.comm.ps.client import PSCommunicator
from distrain.comm.ps.server import ParameterServer

from .test_ps import first_line, killed_on_failure, run_ranks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "a-test-secret-for-bounded-memory-0123"
GIB = 2 ** 30


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_memory_bytes(pid):
    """The process's peak resident memory (VmHWM in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@contextlib.contextmanager
def server_process(tmp_path, world_size, *arguments):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("DISTRAIN_PS_")}
    environment["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    process = subprocess.Popen([sys.executable, "-m", "distrain.comm.ps.server", "--world-size", str(world_size),
                                "--bind", f"tcp://127.0.0.1:{free_port()}", "--secret-file", str(secret_file),
                                *arguments], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    with killed_on_failure(process):
        yield process, first_line(process, 20)


def send_one_frame_and_wait_for_disconnect(address, frames, timeout):
    """Send a message as a stranger; True once the server has dropped the connection (within `timeout`).

    The server may refuse the stranger at the handshake before the last frames are queued; a DEALER with no peer
    left would then block in send forever, so the frames go without blocking and the monitor has the last word."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RECONNECT_IVL, 60_000)  # no second try within the test
    monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        dealer.connect(address)
        try:
            dealer.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # refused at the handshake before the last frames were queued: the socket has no peer left to queue to
        return bool(monitor.poll(int(timeout * 1000))) and recv_monitor_message(monitor)["event"] is not None
    finally:
        dealer.disable_monitor()
        monitor.close(linger=0)
        dealer.close(linger=0)
        context.term()


def allreduce_on_two_ranks(address, secret, length, server_pid=None):
    """Each of 2 ranks (threads) allreduces rank-dependent values; {rank: result or error}, and under "peak" the
    server's peak memory read by rank 0 before it leaves (the server command exits once every rank has left)."""
    outcomes = {}

    def body(comm):
        values = np.arange(length, dtype=np.float32) * (comm.rank + 1)
        comm.allreduce(values)
        if comm.rank == 0 and server_pid is not None:
            outcomes["peak"] = peak_memory_bytes(server_pid)
        return values

    results, errors = run_ranks(address, 2, body, secret=secret, timeout=10.0)
    return {**outcomes, **results, **errors}


@pytest.mark.timeout(90)
def test_four_gigabyte_frames_from_strangers_leave_the_server_small_and_serving(tmp_path):
    zeros = np.zeros(GIB, dtype=np.uint8)  # mapped lazily: the kernel reads its pages as zeros, nothing is allocated
    header = msgpack.packb({"op": "allreduce", "rank": 0, "seq": 1, "session": b"x" * 16, "index": 0,
                            "dtype": "uint8", "shape": [GIB], "reduce": "sum"})
    with server_process(tmp_path, 2) as (server, address):
        before = peak_memory_bytes(server.pid)
        dropped = ["still sending"] * 4

        def send(i):
            try:
                dropped[i] = send_one_frame_and_wait_for_disconnect(address, [header, zeros, b"\0" * 32], timeout=20.0)
            except Exception as error:  # shown by the assertion below rather than lost with the thread
                dropped[i] = repr(error)

        senders = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(4)]
        start = time.monotonic()
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        elapsed = time.monotonic() - start
        outcomes = allreduce_on_two_ranks(address, SECRET, 1000, server.pid)
        peak = outcomes["peak"]
    assert peak < 200 * 2 ** 20, f"the server peaked at {peak / 2 ** 20:.0f} MiB (from {before / 2 ** 20:.0f} MiB)"
    assert dropped == [True] * 4, f"the server did not drop every oversized peak in time: {dropped}"
    assert elapsed < 20, elapsed
    expected = np.arange(1000, dtype=np.float32) * 3
    for rank in range(2):
        assert isinstance(outcomes.get(rank), np.ndarray) and np.array_equal(outcomes[rank], expected), outcomes


@pytest.mark.timeout(60)
def test_a_rank_is_told_the_limit_and_how_to_raise_it_before_sending(monkeypatch):
    monkeypatch.setenv(protocol.SECRET_ENVIRONMENT_VARIABLE, SECRET)
    server = ParameterServer(2, max_message_bytes=2 ** 20).start()
    try:
        refused = {}

        def body(comm):
            if comm.rank == 0:
                with pytest.raises(CommunicatorError) as caught:
                    comm.allreduce(np.zeros(2 ** 18 + 1, dtype=np.float32))  # 4 bytes over 1 MiB
                refused["error"] = str(caught.value)
            values = np.full(2 ** 18, comm.rank + 1.0, dtype=np.float32)  # exactly 1 MiB: allowed
            comm.allreduce(values)
            return values

        results, errors = run_ranks(server.address, 2, body, timeout=10.0)
        outcomes = {**results, **errors, **refused}
    finally:
        server.close()
    message = outcomes["error"]
    assert "1048580 bytes, over the parameter server's limit of 1048576 bytes (1 MiB)" in message, message
    assert protocol.MAX_MESSAGE_ENVIRONMENT_VARIABLE in message and "--max-message-mb" in message, message
    assert server.refused == 0, "the oversized request reached the server"
    for rank in range(2):  # the refused call used up no collective number: the ranks stay in step
        assert isinstance(outcomes[rank], np.ndarray) and outcomes[rank].tolist() == [3.0] * 2 ** 18, outcomes[rank]


def test_the_limit_comes_from_the_environment_or_the_command_line():
    assert protocol.max_message_bytes(None, environ={}) == protocol.DEFAULT_MAX_MESSAGE_BYTES == 256 * 2 ** 20
    assert protocol.max_message_bytes(None, {protocol.MAX_MESSAGE_ENVIRONMENT_VARIABLE: "512"}) == 512 * 2 ** 20
    assert protocol.max_message_bytes(1000, {protocol.MAX_MESSAGE_ENVIRONMENT_VARIABLE: "512"}) == 1000
    with pytest.raises(ValueError, match="number of MiB"):
        protocol.max_message_bytes(None, {protocol.MAX_MESSAGE_ENVIRONMENT_VARIABLE: "lots"})
    with pytest.raises(ValueError, match="positive"):
        protocol.max_message_bytes(0, {})


@pytest.mark.timeout(60)
def test_a_rank_may_only_have_so_many_collectives_waiting_for_the_others(monkeypatch):
    monkeypatch.setenv(protocol.SECRET_ENVIRONMENT_VARIABLE, SECRET)
    monkeypatch.setattr(server_module, "MAX_PENDING_PER_RANK", 5)
    server = ParameterServer(2).start()
    try:
        early = PSCommunicator(server.address, 0, 2, timeout=10.0)
        try:
            arrays = [np.full(3, float(i)) for i in range(6)]
            handles = [early.allreduce_async(array) for array in arrays]
            with pytest.raises(CommunicatorError, match="rank 0 already has 5 collectives or store reads waiting"):
                handles[5].wait()
            late = PSCommunicator(server.address, 1, 2, timeout=10.0)
            try:
                for i in range(5):
                    late.allreduce(np.full(3, 10.0 * i))
            finally:
                late.close()
            for i in range(5):
                handles[i].wait()
                assert arrays[i].tolist() == [11.0 * i] * 3
            assert server.pending[0] == 0 and server.pending[1] == 0
        finally:
            early.close()
        assert server._thread.is_alive()
    finally:
        server.close()
