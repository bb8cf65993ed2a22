"""Start N ranks of a script on this machine without MPI (`python -m distrain.launch -n N --backend ps|nccl`).

The launcher does what mpiexec would do for the MPI backend:

- it starts a rendezvous server (comm/ps/server.py) on 127.0.0.1 before any rank: the
  ps backend's ranks sum their gradients through it, the nccl backend's ranks use its
  key-value store to share rank 0's NCCL unique id;
- it starts the ranks as `python -m distrain.launch script.py args...` with RANK,
  WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, DISTRAIN_BACKEND and DISTRAIN_PS_ADDRESS set,
  each in its own process group (so that stopping a rank stops what it started);
- it copies every output line of every rank to its own stdout/stderr behind a "[rank] "
  prefix, one whole line (or carriage-return update) at a time (supervision.OutputRelay:
  lines of different ranks never interleave);
- when a rank exits with an error, it stops the others (SIGTERM, then SIGKILL after
  `grace` seconds) and exits with that rank's code (128+n for signal n), printing one line
  that names the rank, its pid and host and how it ended: the ranks still waiting in a
  collective for the dead one never hang;
- Ctrl-C (or SIGTERM to the launcher, as Slurm sends) forwards SIGINT to every rank,
  waits `grace` seconds, kills what is left and exits with 130.

Ranks that lose their launcher (kill -9) notice within a second and exit (launch.py).

Several machines (`--nnodes M --node-rank K --server tcp://HOST:PORT`, one launcher per
machine, as torchrun): each launcher starts its N local ranks as global ranks K*N..K*N+N-1
of a world of M*N; the launcher of node 0 serves the rendezvous at PORT on every
interface, which needs the shared secret ($DISTRAIN_PS_SECRET, or --secret-file), and the
others connect to it. launchers/ps_cluster.sh does this over ssh.

Several parameter servers (`--servers S`, ps backend): the rendezvous server is server 0,
and node 0's launcher starts servers 1..S-1 as processes of their own (ps_servers.py says
where they listen); the ranks get every address in $DISTRAIN_PS_ADDRESSES.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .comm.ps import protocol
from .comm.ps.server import ParameterServer
from .comm.ranks import OUTER_LAUNCHER_PREFIXES
from .process_lifetime import die_with_parent_hook
from .ps_servers import ServerProcesses, remote_addresses
from .supervision import SAID, OutputRelay, exit_status, note_pipe, read_note, verdict

GRACE_SECONDS = 3.0
MPIEXEC_GRACE_SECONDS = 10.0  # mpiexec forwards SIGINT to its ranks and waits for them itself
POLL_SECONDS = 0.05


def worker_environment(base, rank, size, backend, address, rank0_only=False, local_rank=None, local_size=None):
    """The environment of rank `rank`: the base one, less an outer launcher's numbering, plus the rank's variables.

    `address`: the server's, or a list of every server's (server 0 first: $DISTRAIN_PS_ADDRESSES when several).
    """
    env = {name: value for name, value in base.items() if not name.startswith(OUTER_LAUNCHER_PREFIXES)}
    local_rank = rank if local_rank is None else local_rank
    local_size = size if local_size is None else local_size
    addresses = [address] if isinstance(address, str) else list(address)
    env.pop(protocol.ADDRESSES_ENVIRONMENT_VARIABLE, None)  # only this job's list, never one from outside
    if len(addresses) > 1:
        env[protocol.ADDRESSES_ENVIRONMENT_VARIABLE] = ",".join(addresses)
    env.update({"RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(local_rank),
                "LOCAL_WORLD_SIZE": str(local_size),
                "DISTRAIN_BACKEND": backend, protocol.ADDRESS_ENVIRONMENT_VARIABLE: addresses[0],
                "DISTRAIN_LAUNCHER_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"})
    if rank0_only:
        env["DISTRAIN_RANK0_ONLY"] = "1"
    return env


@contextlib.contextmanager
def interrupt_on_sigterm():
    """Inside, SIGTERM (kill, a scheduler's stop, `timeout`) raises KeyboardInterrupt as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_ranks(processes, first_signal, grace):
    """Send `first_signal` to every live rank's process group; SIGKILL what is left after `grace` seconds."""
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, first_signal)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(POLL_SECONDS)
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def server_bind_address(server):
    """Where node 0 listens for `server` ("tcp://HOST:PORT"): every interface, unless HOST is loopback."""
    if protocol.is_loopback(server):
        return server
    scheme, _, rest = server.partition("://")
    return f"{scheme}://*:{rest.rsplit(':', 1)[1]}"


def run_workers(count, backend, script_argv, prefix=True, rank0_only=False, grace=GRACE_SECONDS,
                python=sys.executable, nnodes=1, node_rank=0, server=None, secret=None, servers=1, partition_mb=None,
                max_restarts=0, tolerant=False, checkpoint_dir=None, checkpoint_every=None):
    """Run `count` ranks of `script_argv` (module docstring); returns the launcher's exit code.

    `servers`: how many parameter servers (ps_servers.py says where they run); `partition_mb`: the ranks'
    partition size ($DISTRAIN_PS_PARTITION_MB), when given. `max_restarts`, `tolerant`: an asynchronous
    job's (NOTE [ Restarting a rank ]). `checkpoint_dir`: where the servers keep their checkpoints, server-I.ckpt
    each, every `checkpoint_every` updates (comm/ps/server_checkpoint.py); a server restarted, or a job started
    again with the same directory, resumes from them.
    """
    checkpoints = [None] * servers
    if checkpoint_dir is not None and node_rank == 0:
        os.makedirs(checkpoint_dir, exist_ok=True)
        checkpoints = [os.path.join(checkpoint_dir, f"server-{number}.ckpt") for number in range(servers)]
    world = count * nnodes
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"--node-rank {node_rank} is outside 0..{nnodes - 1} (--nnodes {nnodes})")
    if nnodes > 1 and not server:
        raise ValueError("several nodes need --server tcp://HOST:PORT: the address of node 0, where the "
                         "rendezvous server runs")
    environment = dict(os.environ)
    # Every job is authenticated, loopback included: the given secret (several machines must share one), else a
    # fresh one. The ranks get it in their environment (readable only by this user), never on a command line.
    environment[protocol.SECRET_ENVIRONMENT_VARIABLE] = protocol.job_secret(secret, environment, nnodes)
    environment.pop(protocol.SECRET_FILE_ENVIRONMENT_VARIABLE, None)
    if partition_mb is not None:
        environment[protocol.PARTITION_ENVIRONMENT_VARIABLE] = str(partition_mb)
    remote = remote_addresses(server, servers) if server and servers > 1 else None
    rendezvous = extra_servers = None
    processes, copiers = [], []
    try:
        if node_rank == 0:
            rendezvous = ParameterServer(world, server_bind_address(server) if server else "tcp://127.0.0.1:0",
                                         secret=environment[protocol.SECRET_ENVIRONMENT_VARIABLE],
                                         checkpoint=checkpoints[0], checkpoint_every=checkpoint_every).start()
            if servers > 1:
                binds = [server_bind_address(address) for address in remote[1:]] if remote else \
                    ["tcp://127.0.0.1:0"] * (servers - 1)
                extra_servers = ServerProcesses(binds, world, environment, python, checkpoints[1:], checkpoint_every)
        addresses = remote or [server or rendezvous.address, *(extra_servers.addresses if extra_servers else [])]
        with interrupt_on_sigterm():
            return _start_and_watch(processes, copiers, count, node_rank, world, script_argv, python,
                                    environment, backend, addresses, rank0_only, prefix, grace, extra_servers,
                                    max_restarts, tolerant)
    except KeyboardInterrupt:
        stop_ranks(processes, signal.SIGINT, grace)
        sys.stderr.write(f"distrain.launch: interrupted; stopped all {count} ranks of this node\n")
        return 130
    finally:
        stop_ranks(processes, signal.SIGKILL, 0)  # nothing outlives the launcher
        for copier in copiers:
            copier.join(timeout=grace)
        if extra_servers is not None:
            extra_servers.stop(grace)
        if rendezvous is not None:
            rendezvous.close()


def _start_and_watch(processes, copiers, count, node_rank, world, script_argv, python, environment, backend,
                     address, rank0_only, prefix, grace, servers=None, max_restarts=0, tolerant=False):
    """Start this node's ranks (into `processes`, their output copiers into `copiers`) and wait for them.

    `servers`: the parameter-server processes (ps_servers.py) that the ranks need: one that fails ends the
    job (the ranks that use it fail naming it; this catches it even while no rank waits on it).
    `max_restarts` and `tolerant`: an asynchronous parameter-server job's (NOTE [ Restarting a rank ])."""
    lock = threading.Lock()
    relays = {}
    notes = {}  # local rank -> its note pipe (supervision.leave_note), until read

    def start(local_rank):
        rank = node_rank * count + local_rank
        env = worker_environment(environment, rank, world, backend, address, rank0_only, local_rank, count)
        note_read, note_write, env = note_pipe(env)
        notes[local_rank] = note_read
        try:
            process = subprocess.Popen([python, "-m", "distrain.launch", *script_argv], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                       pass_fds=(note_write,), preexec_fn=die_with_parent_hook())
        finally:
            os.close(note_write)
        if local_rank < len(processes):
            processes[local_rank] = process
        else:
            processes.append(process)
        label = f"[{rank}] ".encode() if prefix else b""
        for pipe, stream in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
            relay = OutputRelay(pipe, stream, label, lock)
            relay.start()
            copiers.append(relay)
        relays[local_rank] = relay  # the stderr one: it knows whether a traceback came out

    restarts = RankRestarts(max_restarts, start, processes, notes, node_rank * count)
    try:
        for local_rank in range(count):
            start(local_rank)
        failure = _watch(processes, grace, servers, restarts if max_restarts or tolerant else None, tolerant)
        for copier in copiers:  # the failing rank's traceback comes out before the verdict
            copier.join(timeout=grace)
        left = {}
        for local_rank in sorted(notes):  # every rank has ended by now; read_note closes each pipe
            left[local_rank] = read_note(notes.pop(local_rank))
    finally:  # a rank that could not start, or Ctrl-C: the pipes not read are closed here
        for note in notes.values():
            os.close(note)
    if failure is None:
        return 0
    local_rank, code, others = failure
    if others is None:  # a rank of an asynchronous job, left out (NOTE [ Restarting a rank ]); the others ended
        sys.stderr.write(f"distrain.launch: the asynchronous job ended without rank {node_rank * count + local_rank}, "
                         f"which failed with code {code}\n")
        return exit_status(code)
    stopped = f"; stopped rank(s) {[node_rank * count + r for r in others]}" if others else ""
    failed_servers = servers.failed() if servers is not None else []
    sys.stderr.write("".join(failed_servers))  # a server that failed first is why the ranks failed
    if local_rank is None:
        sys.stderr.write(f"distrain.launch: the job cannot go on without its parameter servers{stopped}\n")
        return 1
    kind, _, lost_line = left[local_rank].partition("\t")
    if kind == SAID:  # the rank printed why it ended (a usage error)
        pass
    elif lost_line:  # it failed because another rank had gone (on another node, or with code 0): name that one
        sys.stderr.write(lost_line.rstrip("\n") + stopped + "\n")
    else:
        sys.stderr.write(verdict(node_rank * count + local_rank, processes[local_rank].pid, socket.gethostname(),
                                 code, relays[local_rank].traceback_seen, stopped))
    return exit_status(code)


def _watch(processes, grace, servers=None, restarts=None, tolerant=False):
    """Wait for every rank: None when all succeed, else (failed rank, its code, the ranks stopped for it), the
    failed rank None when one of `servers` failed first. With `restarts` (RankRestarts), a failed rank is
    restarted while restarts are left; `tolerant`, one that cannot be is dropped and the others go on, and the
    first such failure is returned once they have all ended, with None for the ranks stopped."""
    dropped = {}
    while True:
        codes = [p.poll() for p in processes]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0) and rank not in dropped]
        if not failed and servers is not None and servers.failed():
            if restarts is not None and tolerant and restarts.restart_servers(servers):
                continue
            failed = [(None, None)]
        for rank, code in failed:
            if rank is not None and restarts is not None and restarts.restart(rank, code):
                continue
            if rank is not None and tolerant:
                dropped[rank] = code
                sys.stderr.write(f"distrain.launch: rank {restarts.first + rank} ended with code {code} and is not "
                                 "restarted; the asynchronous job goes on without it\n")
                continue
            others = [r for r, c in enumerate(codes) if c is None]
            stop_ranks(processes, signal.SIGTERM, grace)
            return rank, code, others
        codes = [p.poll() for p in processes]
        if all(code == 0 or rank in dropped for rank, code in enumerate(codes)):
            if dropped:
                rank = min(dropped)
                return rank, dropped[rank], None
            return None
        time.sleep(POLL_SECONDS)


class RankRestarts:
    """NOTE [ Restarting a rank ]
    In an asynchronous parameter-server job (--ps-mode async) ranks may come and go: the
    servers drop a rank whose connection closes and let a rank that registers later join at
    the current step with the current parameters (stale_synchronous.py). So there the
    launcher does not stop the job when a rank fails: with --max-restarts M it starts that
    rank again, with the same number and environment, up to M times in all (torchrun's flag,
    which restarts the whole group, as a synchronous job must: there a lost rank stops the
    job, and --resume continues from the last checkpoint); a rank that cannot be restarted
    is left out, the others go on, and the launcher exits with its code once they end.
    """

    def __init__(self, limit, start, processes, notes, first):
        self.limit, self.used = limit, 0
        self.start, self.processes, self.notes, self.first = start, processes, notes, first

    def restart_servers(self, servers):
        """Restart the failed parameter-server processes from their checkpoints, if restarts are left (True)."""
        failed = len(servers.failed())
        if not failed or self.used + failed > self.limit or not all(servers.checkpoints):
            return False
        self.used += servers.restart_failed()
        return True

    def restart(self, local_rank, code):
        """Start `local_rank` again if restarts are left (True), saying so."""
        if self.used >= self.limit:
            return False
        self.used += 1
        read_note(self.notes.pop(local_rank))  # the ended process's note: nothing to keep
        sys.stderr.write(f"distrain.launch: rank {self.first + local_rank} (pid {self.processes[local_rank].pid}) "
                         f"ended with code {code}; restarting it ({self.used} of {self.limit} restarts)\n")
        self.start(local_rank)
        return True
