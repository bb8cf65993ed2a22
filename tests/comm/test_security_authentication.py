"""Every parameter-server / rendezvous job is authenticated, loopback included.

The launcher (`python -m distrain.launch -n N --backend ps|nccl`) makes a fresh secret per
job and hands it to its ranks in their environment, never on a command line; a process
without it gets no answer at all: it cannot join, read the rendezvous store or write.
Jobs of several machines must be given a shared secret, even when node 0 is on loopback.
"""
import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import msgpack
import pytest
import zmq

from distrain.comm.base import CommunicatorError
from distrain.comm.ps import client, protocol
from distrain.comm.ps.client import ServerConnection
from distrain.comm.ps.server import ParameterServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RANK_SCRIPT = textwrap.dedent("""
    import hashlib, os, sys, time
    import distrain.distributed as dist

    secret = os.environ["DISTRAIN_PS_SECRET"]
    def command_line(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read()

    command_lines = [command_line(pid) for pid in ("self", os.getppid())]
    print("address", os.environ["DISTRAIN_PS_ADDRESS"], "fingerprint",
          hashlib.sha256(secret.encode()).hexdigest()[:16], "length", len(secret),
          "on a command line", any(secret.encode() in line for line in command_lines), flush=True)
    comm = dist.init("ps", timeout=30)
    comm.connection.store_set("private", b"rank 0's value")
    print("stored", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:  # the test probes the server meanwhile
        time.sleep(0.05)
    dist.shutdown()
""")
REPORT = re.compile(r"\[0\] address (\S+) fingerprint (\w+) length (\d+) on a command line (\w+)")


def launcher_environment(**extra):
    environment = {name: value for name, value in os.environ.items() if not name.startswith("DISTRAIN_PS_")}
    environment.update(PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    return environment


class Launcher:
    """`python -m distrain.launch ...` in its own process group, its output read line by line."""

    def __init__(self, arguments, cwd, environment):
        self.process = subprocess.Popen([sys.executable, "-m", "distrain.launch", *arguments], cwd=cwd,
                                        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")),
                                       daemon=True)
        self.reader.start()

    def wait_for(self, pattern, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; the launcher said:\n{''.join(self.lines)}")

    def finish(self, timeout=60.0):
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.reader.join(5)
            self.process.stdout.close()
        return self.process.returncode, "".join(self.lines)


def probe(address, frames, wait_seconds=1.5):
    """Send `frames` as a stranger; the answer's frames, or None when the server stays silent."""
    context = zmq.Context()
    stranger = context.socket(zmq.DEALER)
    stranger.setsockopt(zmq.LINGER, 0)
    stranger.connect(address)
    try:
        stranger.send_multipart(frames)
        return stranger.recv_multipart() if stranger.poll(int(wait_seconds * 1000)) else None
    finally:
        stranger.close(linger=0)
        context.term()


def unsigned(header):
    return [msgpack.packb(header, use_bin_type=True), b"", b""]


@pytest.mark.timeout(120)
def test_the_launchers_job_admits_only_holders_of_its_fresh_secret(tmp_path, monkeypatch):
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    fingerprints = []
    for job in range(2):
        go = tmp_path / f"go{job}"
        launcher = Launcher(["-n", "1", "--backend", "ps", "rank.py", str(go)], tmp_path, launcher_environment())
        try:
            address, fingerprint, length, on_command_line = launcher.wait_for(REPORT).groups()
            launcher.wait_for(r"\[0\] stored")
            fingerprints.append(fingerprint)
            assert int(length) == 64 and on_command_line == "False"
            assert protocol.is_loopback(address)
            # a local process without the secret: no hello, no store read, no join, whatever it sends
            assert probe(address, unsigned({"op": "hello", "rank": 0, "seq": 0})) is None
            assert probe(address, unsigned({"op": "store_get", "rank": 0, "seq": 1, "session": b"x" * 16,
                                            "key": "private"})) is None
            guessed = b"not-the-secret-of-this-job-0123456789"
            assert probe(address, protocol.pack({"op": "hello", "rank": 0, "seq": 0}, b"", guessed)) is None
            monkeypatch.setattr(client, "SERVER_GRACE_SECONDS", 0.2)
            with pytest.raises(CommunicatorError, match="did not answer"):
                ServerConnection(address, 0, 1, secret=guessed, timeout=1.0)
        finally:
            go.touch()
            code, output = launcher.finish()
        assert code == 0, output
    assert fingerprints[0] != fingerprints[1], "two jobs got the same secret"


@pytest.mark.timeout(60)
def test_a_job_of_several_machines_needs_a_shared_secret_even_on_loopback(tmp_path):
    (tmp_path / "rank.py").write_text("print('a rank ran')\n")
    launcher = Launcher(["-n", "1", "--backend", "ps", "--nnodes", "2", "--node-rank", "0", "--server",
                         "tcp://127.0.0.1:29999", "rank.py"], tmp_path, launcher_environment())
    code, output = launcher.finish(timeout=30)
    assert code == 2 and "without authentication" in output and protocol.SECRET_ENVIRONMENT_VARIABLE in output, output
    assert "a rank ran" not in output


def test_job_secret_is_fresh_unless_given_and_given_for_several_machines(tmp_path):
    fresh = {protocol.job_secret(None, environ={}) for _ in range(3)}
    assert len(fresh) == 3 and all(re.fullmatch(r"[0-9a-f]{64}", secret) for secret in fresh)
    given = "a-secret-shared-by-the-machines"
    assert protocol.job_secret(given, environ={}, nodes=2) == given
    assert protocol.job_secret(None, environ={protocol.SECRET_ENVIRONMENT_VARIABLE: given}, nodes=2) == given
    secret_file = tmp_path / "secret"
    secret_file.write_text(given + "\n")
    secret_file.chmod(0o600)
    assert protocol.job_secret(None, {protocol.SECRET_FILE_ENVIRONMENT_VARIABLE: str(secret_file)}, 2) == given
    with pytest.raises(ValueError, match="without authentication"):
        protocol.job_secret(None, environ={}, nodes=2)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        protocol.job_secret("short", environ={})


def test_a_server_on_loopback_without_a_secret_makes_its_own(monkeypatch):
    monkeypatch.delenv(protocol.SECRET_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.delenv(protocol.SECRET_FILE_ENVIRONMENT_VARIABLE, raising=False)
    servers = [ParameterServer(1) for _ in range(2)]
    try:
        assert all(server.secret_generated and len(server.secret) == 64 for server in servers)
        assert servers[0].secret != servers[1].secret
        assert hashlib.sha256(servers[0].secret).digest() != hashlib.sha256(b"").digest()
    finally:
        for server in servers:
            server.close()
