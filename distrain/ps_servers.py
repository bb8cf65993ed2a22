"""The parameter servers of a job that the launcher starts: `--servers S` (spawn.py).

Server 0 is the launcher's own rendezvous server (a thread of node 0's launcher, as in
every ps or nccl job); servers 1..S-1 are processes of their own (`python -m
distrain.comm.ps.server`), so that each sums its partitions on a core of its own (NOTE
[ Partitions on several servers ] in comm/ps/partitions.py). Where they run:

- one machine: on 127.0.0.1, each at a port the system picks; the launcher reads the
  address each prints;
- several machines (`--nnodes`): all on node 0, at the ports after the rendezvous's
  (`--server tcp://HOST:PORT`: server i at PORT+i), on every interface, authenticated with
  the job's shared secret. Every node's launcher computes the same list from --server and
  --servers, so every node must be given the same --servers (a rank given another list is
  refused by the servers, naming both).

The ranks learn the list from $DISTRAIN_PS_ADDRESSES (server 0 first; $DISTRAIN_PS_ADDRESS
still names server 0). The servers get the secret in their environment, never on a command
line; each dies with the launcher (and is stopped when the ranks end), and one that fails
(ends by a signal or an error) ends the job, named in the launcher's output.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

from .comm.ps import protocol
from .process_lifetime import die_with_parent_hook
from .supervision import describe_ending

START_SECONDS = 60.0  # for a server process to print its address


def check_server_count(servers, backend, nproc):
    """A usage error's text for a bad --servers, or None."""
    if servers < 1:
        return (f"--servers must be at least 1 (the number of parameter-server processes that share the large "
                f"allreduces), got {servers}")
    if servers > protocol.MAX_SERVERS:
        return f"--servers {servers} is more than {protocol.MAX_SERVERS} parameter servers"
    if servers > 1 and backend != "ps":
        return f"--servers {servers} is for --backend ps: the {backend} backend has no parameter servers"
    if servers > 1 and nproc is None:
        return (f"--servers {servers} needs -n N: the launcher that starts the ranks starts the servers too (a rank "
                f"started by another launcher finds them in ${protocol.ADDRESSES_ENVIRONMENT_VARIABLE})")
    return None


def remote_addresses(server, servers):
    """Every server's address on a job of several machines: server i at --server's PORT+i on node 0."""
    scheme, _, rest = server.partition("://")
    host, _, port = rest.rpartition(":")
    if int(port) + servers - 1 > 65535:
        raise ValueError(f"--servers {servers} needs the ports {port}..{int(port) + servers - 1} on node 0 (server i "
                         f"at {server}'s port + i), past 65535: choose a lower --server port")
    return [f"{scheme}://{host}:{int(port) + number}" for number in range(servers)]


class ServerProcesses:
    """Servers 1..S-1 of a job, each a `python -m distrain.comm.ps.server` process (module docstring)."""

    def __init__(self, binds, world_size, environment, python=sys.executable, checkpoints=None, checkpoint_every=None):
        """`checkpoints`: each server's checkpoint file (server_checkpoint.py), or None."""
        self.processes, self.addresses, self.restarted = [], [], 0
        self.world_size, self.environment, self.python = world_size, environment, python
        self.checkpoints, self.checkpoint_every = checkpoints or [None] * len(binds), checkpoint_every
        try:
            for bind, checkpoint in zip(binds, self.checkpoints):
                self.processes.append(self._start(bind, checkpoint))
            for number, process in enumerate(self.processes, start=1):
                self.addresses.append(_first_line(process, f"parameter server {number}"))
        except BaseException:
            self.stop(0)
            raise

    def _start(self, bind, checkpoint):
        extra = [] if checkpoint is None else ["--checkpoint", checkpoint]
        if checkpoint is not None and self.checkpoint_every is not None:
            extra += ["--checkpoint-every", str(self.checkpoint_every)]
        return subprocess.Popen([self.python, "-m", "distrain.comm.ps.server", "--world-size", str(self.world_size),
                                 "--bind", bind, "--quiet", *extra], env=self.environment, stdout=subprocess.PIPE,
                                start_new_session=True, preexec_fn=die_with_parent_hook())

    def restart_failed(self):
        """Start again, at the same address and from its checkpoint, every server that failed; returns how many
        (NOTE [ A server that restarts ] in comm/ps/served_model.py: the ranks reconnect)."""
        count = 0
        for index, process in enumerate(self.processes):
            if process.poll() in (None, 0) or self.checkpoints[index] is None:
                continue
            number = index + 1
            sys.stderr.write(f"distrain.launch: parameter server {number} at {self.addresses[index]} (pid "
                             f"{process.pid}) {describe_ending(process.returncode)}; restarting it from its "
                             f"checkpoint {self.checkpoints[index]}"
                             + ("" if os.path.exists(self.checkpoints[index]) else " (none written yet: it starts "
                                "afresh from rank 0's parameters)") + "\n")
            process.stdout.close()
            bind = self.addresses[index]  # the same port: the ranks know it
            if not protocol.is_loopback(bind):
                bind = "tcp://*:" + bind.rsplit(":", 1)[1]
            self.processes[index] = self._start(bind, self.checkpoints[index])
            _first_line(self.processes[index], f"parameter server {number}")
            self.restarted += 1
            count += 1
        return count

    def failed(self):
        """Lines naming the servers whose process ended with an error or a signal (a server that ends well, once
        every rank has said goodbye, is not named)."""
        return [f"distrain.launch: parameter server {number} at {address} (pid {process.pid}) "
                f"{describe_ending(process.returncode)}\n"
                for number, (process, address) in enumerate(zip(self.processes, self.addresses), start=1)
                if process.poll() not in (None, 0)]

    def stop(self, grace):
        """SIGTERM to every server still running (it leaves its log and secret file tidy), SIGKILL after `grace`."""
        from .spawn import stop_ranks

        stop_ranks(self.processes, signal.SIGTERM, grace)
        for process in self.processes:
            process.stdout.close()


def _first_line(process, name):
    """The address a server process prints first; an error naming it if it ends or stays silent."""
    deadline, line = time.monotonic() + START_SECONDS, b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OSError(f"{name} (pid {process.pid}) printed no address within {START_SECONDS:g} s of its start")
        if not select.select([process.stdout], [], [], min(remaining, 0.5))[0]:
            continue
        piece = os.read(process.stdout.fileno(), 4096)
        if not piece:
            try:
                how = describe_ending(process.wait(timeout=5))
            except subprocess.TimeoutExpired:
                how = "closed its output"
            raise OSError(f"{name} (pid {process.pid}) {how} before it printed its address: its output above says "
                          "why (a port in use?)")
        line += piece
    return line.decode().strip()
