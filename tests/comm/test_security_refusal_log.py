"""Dropped-message logging is rate-limited: a count per interval, not a line per message.

A flood of garbage or of refused handshakes must not flood the log: the first refusal
after a quiet spell is logged in full, the rest are counted by kind and summed up once
per interval.
"""
import logging
import os
import re
import time

import msgpack
import numpy as np
import pytest
import zmq

from distrain.comm import zap
from distrain.comm.ps.refusals import RefusalLog
from distrain.comm.ps.server import ParameterServer

from .test_ps import run_ranks

SECRET = b"a-test-secret-for-the-refusal-log"
SUMMARY = re.compile(r"refused (\d+) more message\(s\) in the last \d+ s: (.*); the last from (.*?): (.*)")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def counts_of(summary):
    """{"bad MAC": 1200, "malformed": 34} from a summary line's "1200 bad MAC, 34 malformed"."""
    return {kind: int(count) for count, kind in (part.split(" ", 1) for part in summary.split(", "))}


def test_a_thousand_refusals_make_two_lines_per_interval(caplog):
    clock = FakeClock()
    refusals = RefusalLog(logging.getLogger("test.refusals"), interval=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for number in range(1000):
            kind = "malformed" if number % 10 == 0 else "bad MAC"
            refusals.refused(kind, f"reason {number}", f"10.0.0.{number % 7}")
            refusals.flush()  # the server's loop flushes often: nothing comes out before the interval ends
            clock.now += 0.005
        clock.now += 10.0
        refusals.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "refused a message from 10.0.0.0 (malformed): reason 0" in lines[0]
    found = SUMMARY.search(lines[1])
    assert found, lines[1]
    assert int(found.group(1)) == 999 and counts_of(found.group(2)) == {"bad MAC": 900, "malformed": 99}
    assert found.group(3) == "10.0.0.5" and found.group(4) == "reason 999"
    # a quiet interval re-arms the immediate line
    clock.now += 30.0
    refusals.flush()
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        caplog.clear()
        refusals.refused("bad MAC", "again", "10.0.0.9")
    assert [record.getMessage() for record in caplog.records][0].startswith(
        "parameter server: refused a message from 10.0.0.9 (bad MAC): again")


def dealer(context, address, secret):
    """A DEALER whose handshake shows `secret`'s password (zap.py)."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    zap.present_credentials(socket, secret)
    socket.connect(address)
    return socket


@pytest.mark.timeout(120)
def test_a_flood_of_garbage_gives_the_server_log_a_bounded_number_of_lines(caplog):
    """Refused handshakes (strangers with a wrong password, retried by their ZeroMQ every 100 ms) and garbage
    from a peer past the handshake of a server beyond loopback (which checks every message's MAC) are
    counted, not logged one line each."""
    flood, strangers = 3000, 200
    garbage = [[os.urandom(20), b"", os.urandom(32)],  # bad MAC
               [os.urandom(8)],  # malformed: one frame
               [msgpack.packb({"op": "hello", "rank": 0, "seq": 0}), b"", b""]]  # unsigned
    with caplog.at_level(logging.WARNING, logger="distrain.ps"):
        server = ParameterServer(2, bind="tcp://0.0.0.0:0", secret=SECRET, log_interval=0.5).start()
        address = server.address.replace("0.0.0.0", "127.0.0.1")
        try:
            context = zmq.Context()
            try:
                sockets = [dealer(context, address, b"not-the-secret-of-this-job-0123") for _ in range(strangers)]
                wait(lambda: server.refused_handshakes >= strangers, "every stranger's handshake being refused")
                for socket in sockets:
                    socket.close(linger=0)
                insider = dealer(context, address, SECRET)
                for number in range(flood):
                    insider.send_multipart(garbage[number % 3])
                wait(lambda: server.refused >= flood, "every message being refused")
                assert server.refused == flood
                time.sleep(0.8)  # one interval ends: its summary is logged
                insider.close(linger=0)
            finally:
                context.term()
            check_still_serves(server, address)
        finally:
            server.close()
    lines = [record.getMessage() for record in caplog.records if record.name == "distrain.ps"]
    assert 2 <= len(lines) <= 14, f"{len(lines)} lines for {flood} messages and {strangers} strangers:\n" + \
        "\n".join(lines[:20])
    assert "refused a message from 127.0.0.1 (bad handshake): wrong password" in lines[0], lines[0]
    counted = {}
    for line in lines[1:]:
        found = SUMMARY.search(line)
        assert found and found.group(3) == "127.0.0.1", line
        for kind, count in counts_of(found.group(2)).items():
            counted[kind] = counted.get(kind, 0) + count
    assert set(counted) == {"bad handshake", "bad MAC", "malformed"}, counted
    assert counted["bad handshake"] == server.refused_handshakes - 1, counted
    assert counted["bad MAC"] + counted["malformed"] == flood, counted
    assert counted["malformed"] == flood // 3, counted


def wait(condition, what, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def check_still_serves(server, address):
    def body(comm):
        values = np.array([comm.rank + 1.0, 10.0])
        comm.allreduce(values)
        return values.tolist()

    results, errors = run_ranks(address, 2, body, secret=SECRET, timeout=10.0, join_timeout=20.0)
    assert not errors, errors
    assert results == {0: [3.0, 20.0], 1: [3.0, 20.0]}, results
