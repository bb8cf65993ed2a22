"""A world that finds itself: ranks started without a distrain launcher meet at rank 0's server.

torch.distributed programs start their processes in three ways besides a launcher that
numbers them: `mp.spawn(main, nprocs=N)` with MASTER_ADDR/MASTER_PORT set in the script,
torchrun (which exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and
`init_process_group(init_method="tcp://host:port", rank=r, world_size=n)`. In each, the
processes know their rank, the world size and one address: rank 0's. This module turns
that into what distrain's launcher would have set up:

- rank 0 starts a parameter server (comm/ps/server.py) at the address (under torchrun,
  whose agent keeps MASTER_PORT for its own store, at MASTER_PORT + 1), as a child process
  that dies with it (a thread would compete with rank 0's training for the GIL), on
  loopback when the address is loopback, else on every interface;
- every rank (rank 0 too) joins it as a "ps" rank; the server sums in rank order, so the
  results are the same as the launcher's (and as MPI's for the deterministic paths);
- the process's environment then says what the launcher's would (RANK, WORLD_SIZE,
  LOCAL_RANK, LOCAL_WORLD_SIZE, DISTRAIN_BACKEND=ps, the server's address and secret), so
  everything downstream (the liveness hub, DataLoader workers, the trainer) sees an
  ordinary ps job; `finish` puts the environment back.

Authentication (every server a job starts authenticates its peers, loopback included):
the job's secret is $DISTRAIN_PS_SECRET (distrain.multiprocessing.spawn sets a fresh one
for its children; the launcher for its ranks) or the file named by
$DISTRAIN_PS_SECRET_FILE; failing both, this user's own secret file
(`user_secret_path()`, made once, mode 600), which every process of this user on this
machine, or on machines sharing the home directory, can read and no one else can.
Several machines without a shared home need $DISTRAIN_PS_SECRET set on each.
"""
from __future__ import annotations

import os
import secrets
import select
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from .comm.ps import protocol
from .errors import DistrainError
from .process_lifetime import die_with_parent_hook

SERVER_START_SECONDS = 30.0  # how long rank 0 waits for its server to say where it listens
USER_SECRET_ENVIRONMENT_VARIABLE = "DISTRAIN_USER_SECRET"  # the user secret file's path, if not the default
TORCHRUN_AGENT_STORE_VARIABLE = "TORCHELASTIC_USE_AGENT_STORE"  # torchrun sets it for the ranks it starts


class RendezvousError(DistrainError, RuntimeError):
    """The ranks cannot meet: an address, rank or world size is missing or wrong, or rank 0 cannot serve."""


@dataclass
class Plan:
    """Where and as whom this process meets the others."""

    host: str
    port: int
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def address(self):
        return f"tcp://{self.host}:{self.port}"


def plan(init_method=None, rank=-1, world_size=-1, environ=os.environ) -> Plan:
    """The rendezvous that `init_process_group(init_method, rank, world_size)` asks for (module docstring).

    init_method: None or "env://" (MASTER_ADDR and MASTER_PORT from the environment) or
    "tcp://host:port". rank/world_size: -1 means "from the environment" (RANK, WORLD_SIZE).
    """
    method = "env://" if init_method in (None, "") else str(init_method)
    scheme = method.partition("://")[0]
    if scheme == "env":
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name)]
        if missing:
            raise RendezvousError(f"init_process_group: {' and '.join(missing)} not set: processes started without a "
                                  "launcher find rank 0 there (os.environ['MASTER_ADDR'] = 'localhost'; "
                                  "os.environ['MASTER_PORT'] = '29500' before init_process_group), or pass "
                                  "init_method='tcp://HOST:PORT', or start them with python -m distrain.launch")
        host, port_text, where = environ["MASTER_ADDR"], environ["MASTER_PORT"], "MASTER_PORT"
    elif scheme == "tcp":
        parsed = urlparse(method)
        host, where = parsed.hostname, f"init_method {method!r}"
        try:
            port_text = parsed.port
        except ValueError:
            port_text = None
        if not host or port_text is None:
            raise RendezvousError(f"init_process_group: {where} must be tcp://HOST:PORT (rank 0's address)")
    else:
        raise RendezvousError(f"init_process_group: init_method {method!r} is not supported: use 'env://' "
                              "(MASTER_ADDR, MASTER_PORT) or 'tcp://HOST:PORT'")
    try:
        port = int(port_text)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65535:
        raise RendezvousError(f"init_process_group: {where} gives port {port_text!r}; it must be a number in "
                              "1..65534 that rank 0 can listen on")
    if scheme == "env" and environ.get(TORCHRUN_AGENT_STORE_VARIABLE) == "True":
        port += 1  # torchrun's agent holds MASTER_PORT for its own store (module docstring)
    world_size = _given_or_environment("world_size", world_size, "WORLD_SIZE", environ)
    rank = _given_or_environment("rank", rank, "RANK", environ)
    if world_size < 1:
        raise RendezvousError(f"init_process_group: world_size={world_size}; it must be at least 1")
    if not 0 <= rank < world_size:
        raise RendezvousError(f"init_process_group: rank {rank} is outside the world: ranks are "
                              f"0..{world_size - 1} (world_size={world_size})")
    # on a loopback address every rank is on this machine; elsewhere, unless the environment says, assume each
    # rank on a machine of its own (the liveness hub then listens beyond loopback, authenticated)
    together = protocol.is_loopback(f"tcp://{host}:{port}")
    local_rank = int(environ.get("LOCAL_RANK", rank if together else 0))
    local_world_size = int(environ.get("LOCAL_WORLD_SIZE", world_size if together else 1))
    return Plan(host, port, rank, world_size, local_rank, local_world_size)


def _given_or_environment(name, given, variable, environ):
    if given is not None and int(given) != -1:
        return int(given)
    text = environ.get(variable)
    if text is None:
        raise RendezvousError(f"init_process_group: no {name}: pass {name}= or set {variable} (torchrun and "
                              "distrain.launch set it; mp.spawn's processes pass their index as rank=)")
    try:
        return int(text)
    except ValueError:
        raise RendezvousError(f"init_process_group: {variable}={text!r} is not a whole number") from None


def user_secret_path(environ=os.environ):
    """This user's rendezvous secret file: $DISTRAIN_USER_SECRET, else ~/.config/distrain/rendezvous-secret."""
    if environ.get(USER_SECRET_ENVIRONMENT_VARIABLE):
        return environ[USER_SECRET_ENVIRONMENT_VARIABLE]
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "distrain", "rendezvous-secret")


def job_secret(environ=os.environ):
    """The secret every rank of a launcher-less job shares (module docstring): given, else this user's own."""
    given = protocol.load_secret(None, environ)
    if given is not None:
        return given.decode()
    return _user_secret(user_secret_path(environ))


def _user_secret(path):
    """Read this user's secret file, making it first if there is none (atomically: racing ranks read one secret)."""
    if not os.path.exists(path):
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        draft = f"{path}.{secrets.token_hex(8)}.draft"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(protocol.new_secret() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)  # fails if another rank made it first: then everyone reads that one
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    info = os.stat(path)
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RendezvousError(f"the rendezvous secret {path} must belong to you and be readable by you alone "
                              f"(it is mode {stat.S_IMODE(info.st_mode):o}): chmod 600 {path}")
    return protocol.read_secret_file(path)


class ServerProcess:
    """Rank 0's parameter server for the job, as a child process (it dies with rank 0)."""

    def __init__(self, plan_, secret):
        from .spawn import server_bind_address

        # a loopback name ("localhost") is no interface ZeroMQ can bind: loopback is 127.0.0.1
        bind = "tcp://127.0.0.1:%d" % plan_.port if protocol.is_loopback(plan_.address) else \
            server_bind_address(plan_.address)
        environment = dict(os.environ, **{protocol.SECRET_ENVIRONMENT_VARIABLE: secret})
        environment.pop(protocol.SECRET_FILE_ENVIRONMENT_VARIABLE, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "distrain.comm.ps.server", "--world-size", str(plan_.world_size), "--bind", bind,
             "--quiet"],
            # its warnings (refused peers, failed collectives) go to rank 0's stderr: a pipe nobody read would
            # fill and stop the server; the one stdout line it prints is its address
            env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None,
            preexec_fn=die_with_parent_hook())
        self.address = self._wait_for_address(plan_)

    def _wait_for_address(self, plan_):
        """The line the server prints once it listens; an error saying why when it ends instead."""
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline().decode(errors="replace").strip()
                if line:
                    return line
            if self.process.poll() is not None:
                raise RendezvousError(f"rank 0 cannot serve the rendezvous at {plan_.address}: its server exited "
                                      f"with code {self.process.returncode}, saying why above (is the port in use? "
                                      "pick another MASTER_PORT)")
        self.stop(0)
        raise RendezvousError(f"rank 0's rendezvous server at {plan_.address} did not start within "
                              f"{SERVER_START_SECONDS:g} s")

    def stop(self, grace):
        """Wait up to `grace` seconds for the server to end by itself (every rank said goodbye), then stop it."""
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


class Meeting:
    """A rendezvous in progress or held: `join` sets the environment, `finish` undoes it and stops the server."""

    def __init__(self, plan_, timeout):
        self.plan = plan_
        self.timeout = float(timeout)
        self.server = None
        self.saved = {}

    def join(self):
        """Start rank 0's server (on rank 0) and set this process's environment as the launcher would."""
        secret = job_secret()
        if self.plan.rank == 0:
            self.server = ServerProcess(self.plan, secret)
        variables = {"RANK": self.plan.rank, "WORLD_SIZE": self.plan.world_size, "LOCAL_RANK": self.plan.local_rank,
                     "LOCAL_WORLD_SIZE": self.plan.local_world_size, "DISTRAIN_BACKEND": "ps",
                     protocol.ADDRESS_ENVIRONMENT_VARIABLE: self.plan.address,
                     protocol.SECRET_ENVIRONMENT_VARIABLE: secret}
        for name, value in variables.items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = str(value)
        return self

    def finish(self):
        """Put the environment back; on rank 0 wait (bounded) for the other ranks to leave the server, then stop it."""
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.saved = {}
        if self.server is not None:
            self.server.stop(grace=min(self.timeout, 30.0))
            self.server = None
