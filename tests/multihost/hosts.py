"""Network namespaces as hosts: several "machines" on this one, each with its own address and shaped link.

A multi-host run needs what one machine's loopback lacks: hosts with addresses of their own,
traffic that leaves a process through a network interface, and links whose bandwidth is a
host's own, so that two servers on two hosts really have twice one server's bandwidth. A
Linux network namespace gives a process its own interfaces and addresses; a veth pair
joins it to a bridge in the root namespace, the "switch"; a tbf qdisc on each end of the
pair shapes that host's link. Making them needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN);
without it `Network()` refuses with NamespacesUnavailable, which says why.

    with Network() as network:
        server = network.add_host(rate="200mbit")       # a host whose link runs at 200 Mbit/s each way
        worker = network.add_host(rate="1gbit")
        process = server.popen([sys.executable, "-m", "distrain.comm.ps.server", "--world-size", "1",
                                "--bind", f"tcp://{server.address}:0", "--secret-file", path],
                               stdout=subprocess.PIPE, text=True)
        address = first_line(process, timeout=30, what="the server's address")
        worker.run([sys.executable, "train.py", address], timeout=120)
    # every process, namespace, veth and the bridge are gone here, also after an exception or Ctrl-C

The layout of one Network, whose names all start with a prefix unique to the run (PREFIX:
"dn", the creating process's id in base 36, one random character; interface names have at
most 15 characters):

    root namespace: bridge PREFIX"br", address 10.77.X.1/24 (reach the hosts from here through it)
      +-- veth PREFIX"v<i>"  ==pair==  eth0 in namespace PREFIX"h<i>", address 10.77.X.<i+2>/24

X is the first third octet that no interface of the root namespace uses yet, chosen under a
file lock, so that parallel runs get disjoint subnets. A host's link is shaped on both ends:
the namespace's end limits what the host sends, the bridge's end what it receives (a switch
port's egress queue), so a link is `rate` each way at once, like a full-duplex NIC, and
several hosts sending to one queue up at its port, as they do at a real switch. This kernel
has no netem: latency is what a veth has (microseconds), bandwidth is the only thing shaped.

NOTE [ Namespace cleanup ]
Everything a Network made is removed by close(), which the context manager calls on any
exit, exception and Ctrl-C (KeyboardInterrupt) included. Order matters: a namespace outlives
`ip netns del` while a process is inside it (and keeps its veth alive), so close() first
ends each started process's group (SIGTERM, then SIGKILL after a grace period), then kills
whatever `ip netns pids` still finds inside (a grandchild that left the group), then deletes
the namespaces (which deletes their veths) and the bridge. Safety nets: an atexit hook
closes every Network its process opened, and SIGTERM and SIGHUP, where nobody handles them,
are turned into SystemExit so that the context managers and the hook run. SIGKILL cannot be
caught: the next Network this machine opens removes the leftovers of any run whose creating
process no longer exists (the process id in the prefix says whose they are).
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import re
import secrets
import selectors
import signal
import subprocess
import tempfile
import threading
import time

log = logging.getLogger("distrain.multihost")

SUBNET_PREFIX = "10.77"  # hosts live in 10.77.X.0/24 (RFC 1918, private)
NAME_PREFIX = "dn"  # every name a Network makes starts with it: "dn" + pid (base 36, 5 characters) + 1 random
NAME_PATTERN = re.compile(r"^dn([0-9a-z]{5})[0-9a-z](?:h|v|br)\d*$")
PID_DIGITS = 5  # base 36: up to 60 million, above Linux's largest pid (4194304)
MAX_HOSTS = 253  # .2 to .254 of the /24
TBF_LATENCY = "50ms"  # the longest a packet may wait in a shaped queue before it is dropped
MIN_BURST_BYTES = 128 * 1024  # above veth's 64 KiB segmentation-offload packets, so tbf never has to split one
BURST_SECONDS = 0.004  # and at least 4 ms of the rate: the kernel's timer granularity at HZ=250
TERMINATE_GRACE_SECONDS = 3.0
COMMAND_TIMEOUT_SECONDS = 30.0  # for `ip` and `tc` themselves
LOCK_PATH = os.path.join("/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir(),
                         "distrain-multihost.lock")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|tbit)$", re.IGNORECASE)
_RATE_UNITS = {"bit": 1, "kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9, "tbit": 10 ** 12}
_PERMISSION_WORDS = ("permission denied", "operation not permitted")
_BASE36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class NamespacesUnavailable(RuntimeError):
    """This process may not create network namespaces here (not root, no `ip`, no tc, ...); the message says why."""


class NetworkCommandFailed(RuntimeError):
    """An `ip` or `tc` command (or a command run on a host) exited with an error; the message has its output."""


def parse_rate(rate: str) -> int:
    """Bits per second of a tc rate written in bits ("200mbit", "1gbit", "1.5Gbit"); ValueError otherwise."""
    match = _RATE.match(rate.strip())
    if not match:
        raise ValueError(f"link rate {rate!r} is not a tc rate in bits, such as '200mbit' or '1gbit' "
                         "(byte rates such as 'mbps' are refused: tc reads them as bytes per second)")
    return int(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()])


def run_command(argv, timeout=COMMAND_TIMEOUT_SECONDS) -> str:
    """Run a system command (ip, tc), return what it printed on stdout; NetworkCommandFailed if it failed.

    A refusal for lack of privilege, or a missing program, is NamespacesUnavailable instead:
    the caller cannot fix that by retrying, only by running as root."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise NamespacesUnavailable(f"{argv[0]!r} is not installed (iproute2 provides ip and tc): multi-host "
                                    "runs need it") from None
    except subprocess.TimeoutExpired:
        raise NetworkCommandFailed(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        printed = (done.stderr.strip() or done.stdout.strip() or "(it printed nothing)")
        if any(words in printed.lower() for words in _PERMISSION_WORDS):
            raise NamespacesUnavailable(f"not permitted to create network namespaces and links here: "
                                        f"`{' '.join(argv)}` said: {printed}. Multi-host runs need root (or "
                                        "CAP_NET_ADMIN and CAP_SYS_ADMIN)")
        raise NetworkCommandFailed(f"`{' '.join(argv)}` exited with {done.returncode}: {printed}")
    if done.stderr.strip():
        log.warning("`%s` succeeded but said: %s", " ".join(argv), done.stderr.strip())
    return done.stdout


def first_line(process: subprocess.Popen, timeout: float, what: str) -> str:
    """The first line `process` prints on its stdout (a pipe, text mode), waiting at most `timeout` seconds.

    For servers that print their address once ready; raises NetworkCommandFailed naming `what` if the
    process ends or stays silent first."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=min(0.1, max(0.0, deadline - time.monotonic()))):
                line = process.stdout.readline()
                if line:
                    return line.strip()
            if process.poll() is not None:
                raise NetworkCommandFailed(f"{what}: `{' '.join(map(str, process.args))}` exited with "
                                           f"{process.returncode} before printing a line")
    finally:
        selector.close()
    raise NetworkCommandFailed(f"{what}: `{' '.join(map(str, process.args))}` printed nothing within {timeout:g} s")


class Host:
    """One namespace of a Network: its name, its address on the bridge, its link rate (None: unshaped)."""

    def __init__(self, network: Network, index: int, namespace: str, veth: str, address: str, rate: str | None):
        self.network = network
        self.index = index
        self.namespace = namespace
        self.veth = veth  # the bridge's end, in the root namespace (the host's end is eth0 inside)
        self.address = address
        self.rate = rate

    def __repr__(self):
        return f"Host({self.namespace}, {self.address}, {self.rate or 'unshaped'})"

    def link_statistics(self) -> dict:
        """What the host's link has carried so far, each way: {"sent"|"received": {"bytes", "packets", "dropped",
        "overlimits"}}, read from the two tbf qdiscs' counters (`tc -s`; an unshaped host's are always 0). Drops
        show where senders met a full queue (several hosts sending to one, as at a switch port)."""
        statistics = {}
        for direction, tc, device in (("sent", ["tc", "-n", self.namespace], "eth0"), ("received", ["tc"], self.veth)):
            shown = run_command([*tc, "-s", "qdisc", "show", "dev", device])
            match = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", shown)
            if not match:
                raise NetworkCommandFailed(f"`{' '.join(tc)} -s qdisc show dev {device}` shows no counters: {shown!r}")
            statistics[direction] = dict(zip(("bytes", "packets", "dropped", "overlimits"), map(int, match.groups())))
        return statistics

    def command(self, argv) -> list:
        """argv run inside this host's namespace (`ip netns exec` execs it: the process is argv's own)."""
        return ["ip", "netns", "exec", self.namespace, *map(str, argv)]

    def popen(self, argv, **popen_arguments) -> subprocess.Popen:
        """Start argv inside this host, in a process group of its own, ended by the Network's close()."""
        return self.network._start(self.command(argv), popen_arguments)

    def run(self, argv, timeout: float, **popen_arguments) -> subprocess.CompletedProcess:
        """Run argv inside this host to its end (its output captured unless told otherwise); NetworkCommandFailed
        if it fails or outlives `timeout` (its whole process group is killed then)."""
        popen_arguments.setdefault("stdout", subprocess.PIPE)
        popen_arguments.setdefault("stderr", subprocess.PIPE)
        popen_arguments.setdefault("text", True)
        process = self.popen(argv, **popen_arguments)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_group(process, grace=0)
            raise NetworkCommandFailed(f"on {self.namespace}: `{' '.join(map(str, argv))}` did not finish within "
                                       f"{timeout:g} s (killed)") from None
        if process.returncode != 0:
            raise NetworkCommandFailed(f"on {self.namespace}: `{' '.join(map(str, argv))}` exited with "
                                       f"{process.returncode}: {(stderr or '').strip()[-2000:]}")
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


class Network:
    """Namespaced hosts on a private bridge; a context manager that removes all it made (NOTE [ Namespace cleanup ])."""

    def __init__(self):
        self.owner = os.getpid()
        self.prefix = NAME_PREFIX + _base36(self.owner).rjust(PID_DIGITS, "0") + secrets.choice(_BASE36_DIGITS)
        self.bridge = f"{self.prefix}br"
        self.hosts: list[Host] = []
        self.processes: list[subprocess.Popen] = []
        self.closed = False
        self._made_bridge = False
        _check_capabilities()
        _install_safety_net()
        _open_networks.add(self)
        try:
            remove_leftovers()
            self.subnet = self._make_bridge()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.close(raise_errors=kind is None)  # never hide the exception that ended the block

    @property
    def bridge_address(self) -> str:
        """The root namespace's address on the bridge: a process here reaches every host through it."""
        return f"{self.subnet}.1"

    def add_host(self, rate: str | None = None) -> Host:
        """A new namespace joined to the bridge; `rate` (tc syntax, "200mbit") shapes its link both ways."""
        if self.closed:
            raise RuntimeError("this Network is closed")
        if len(self.hosts) >= MAX_HOSTS:
            raise ValueError(f"a Network holds at most {MAX_HOSTS} hosts (one /24)")
        bits = None if rate is None else parse_rate(rate)
        index = len(self.hosts)
        host = Host(self, index, f"{self.prefix}h{index}", f"{self.prefix}v{index}", f"{self.subnet}.{index + 2}",
                    rate)
        self.hosts.append(host)  # before it exists, so that a failure half-way still removes what was made
        namespace = ["ip", "-n", host.namespace]
        run_command(["ip", "netns", "add", host.namespace])
        run_command(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.namespace])
        run_command([*namespace, "link", "set", "lo", "up"])
        run_command([*namespace, "addr", "add", f"{host.address}/24", "dev", "eth0"])
        run_command([*namespace, "link", "set", "eth0", "up"])
        run_command(["ip", "link", "set", host.veth, "master", self.bridge, "up"])
        if bits is not None:
            _shape(["tc", "-n", host.namespace], "eth0", rate, bits)  # what the host sends
            _shape(["tc"], host.veth, rate, bits)  # what it receives
        _wait_until_up(host)
        return host

    def close(self, raise_errors=True):
        """Remove every process, namespace, veth and the bridge this Network made (idempotent)."""
        if self.closed or os.getpid() != self.owner:  # a forked child must not tear down its parent's network
            return
        self.closed = True
        _open_networks.discard(self)
        problems = []
        for process in self.processes:
            _end_group(process, TERMINATE_GRACE_SECONDS)
        for host in self.hosts:
            problems.extend(_remove_namespace(host.namespace))
        if self.hosts or self._made_bridge:
            try:  # the bridge, and whatever else of ours is still here (a veth whose namespace was never made)
                problems.extend(_remove_links(self.prefix))
            except (NetworkCommandFailed, NamespacesUnavailable) as error:
                problems.append(str(error))
        if problems:
            message = f"removing network {self.prefix} left problems: " + "; ".join(problems)
            if raise_errors:
                raise NetworkCommandFailed(message)
            log.error("%s", message)

    def _make_bridge(self) -> str:
        """Create the bridge with the first free 10.77.X.1/24; returns "10.77.X"."""
        try:
            lock = open(LOCK_PATH, "a")
        except PermissionError as error:
            raise NamespacesUnavailable(f"cannot open the multi-host lock file {LOCK_PATH}: {error}. Multi-host "
                                        "runs need root (or CAP_NET_ADMIN and CAP_SYS_ADMIN)") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs must not pick the same X
            used = set(re.findall(rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", run_command(["ip", "-o", "-4",
                                                                                                 "addr", "show"])))
            free = [x for x in range(256) if str(x) not in used]
            if not free:
                raise NetworkCommandFailed(f"every {SUBNET_PREFIX}.X.0/24 is in use here: remove old networks")
            subnet = f"{SUBNET_PREFIX}.{free[0]}"
            self._made_bridge = True  # from here on, close() looks for it
            run_command(["ip", "link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
            run_command(["ip", "addr", "add", f"{subnet}.1/24", "dev", self.bridge])
            run_command(["ip", "link", "set", self.bridge, "up"])
        return subnet

    def _start(self, argv, popen_arguments) -> subprocess.Popen:
        if self.closed:
            raise RuntimeError("this Network is closed")
        popen_arguments.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(argv, start_new_session=True, **popen_arguments)
        self.processes.append(process)
        return process


def _check_capabilities():
    """NamespacesUnavailable unless this process holds CAP_NET_ADMIN and CAP_SYS_ADMIN (what `ip netns add` needs)."""
    with open("/proc/self/status") as status:
        effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status.read(), re.MULTILINE).group(1), 16)
    missing = [name for name, bit in (("CAP_NET_ADMIN", 12), ("CAP_SYS_ADMIN", 21)) if not effective >> bit & 1]
    if missing:
        raise NamespacesUnavailable(f"not permitted to create network namespaces: this process (uid {os.geteuid()}) "
                                    f"lacks {' and '.join(missing)}. Multi-host runs need root (CI runs them as root)")


def _shape(tc, device, rate, bits):
    """A tbf qdisc at `rate` on `device`, read back from tc to check that the kernel took it."""
    burst = max(MIN_BURST_BYTES, int(bits / 8 * BURST_SECONDS))
    run_command([*tc, "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate, "burst", str(burst),
                 "latency", TBF_LATENCY])
    shown = run_command([*tc, "qdisc", "show", "dev", device])
    match = re.search(r"qdisc tbf \S+ root .*?rate (\S+)", shown)
    if not match or abs(parse_rate(match.group(1)) - bits) > bits // 100:
        raise NetworkCommandFailed(f"`{' '.join(tc)} qdisc show dev {device}` does not show a tbf at {rate}: "
                                   f"{shown.strip()!r}")


def _wait_until_up(host, timeout=5.0):
    """Both ends of a new veth come up asynchronously: wait until the host's end reports it carries traffic."""
    deadline = time.monotonic() + timeout
    while True:
        shown = run_command(["ip", "-n", host.namespace, "-o", "addr", "show", "dev", "eth0"])
        state = run_command(["ip", "-n", host.namespace, "-o", "link", "show", "dev", "eth0"])
        if f"inet {host.address}/24" in shown and "LOWER_UP" in state and ",UP" in state:
            return
        if time.monotonic() > deadline:
            raise NetworkCommandFailed(f"{host.namespace}'s eth0 is not up with {host.address} after {timeout:g} s: "
                                       f"{state.strip()!r} {shown.strip()!r}")
        time.sleep(0.02)


def _end_group(process, grace):
    """SIGTERM to the process's group, SIGKILL after `grace` seconds; reaps the process."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the rest of the group, even when its leader has ended
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=TERMINATE_GRACE_SECONDS)


def _remove_namespace(namespace) -> list:
    """Kill every process still inside, then delete the namespace (and so its veth); returns problems met."""
    problems = []
    try:
        if namespace not in _namespace_names():
            return problems
        for _ in range(3):
            pids = [int(pid) for pid in run_command(["ip", "netns", "pids", namespace]).split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        else:
            problems.append(f"processes {pids} in {namespace} survived SIGKILL")
        run_command(["ip", "netns", "del", namespace])
    except (NetworkCommandFailed, NamespacesUnavailable) as error:
        problems.append(str(error))
    return problems


def _remove_links(prefix, settle_seconds=2.0) -> list:
    """Delete the root namespace's links whose names start with `prefix`; returns problems met.

    A deleted namespace takes its veths with it, but the kernel removes the root's end a moment
    later: such a link is waited for (it vanishes by itself) before it is deleted by hand."""
    deadline = time.monotonic() + settle_seconds
    while True:
        names = [name for name in _link_names() if name.startswith(prefix)]
        veths = [name for name in names if not name.endswith("br")]
        if not veths or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems = []
    for name in names:
        try:
            run_command(["ip", "link", "del", name])
        except NetworkCommandFailed as error:
            if name in _link_names():  # gone meanwhile is what was wanted
                problems.append(str(error))
    return problems


def _namespace_names() -> list:
    return [line.split()[0] for line in run_command(["ip", "netns", "list"]).splitlines() if line.strip()]


def _link_names() -> list:
    """Names of the root namespace's interfaces (a veth's "@peer" suffix removed)."""
    names = []
    for line in run_command(["ip", "-o", "link", "show"]).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            names.append(parts[1].strip().split("@")[0])
    return names


def remove_leftovers() -> list:
    """Remove the namespaces and links of Networks whose creating process is gone (a run killed by SIGKILL);
    returns their names. A live process's Network is never touched."""
    removed = []
    for name in _namespace_names():
        if _dead_owner(name):
            _remove_namespace(name)
            removed.append(name)
    for prefix in sorted({name[:len(NAME_PREFIX) + PID_DIGITS + 1] for name in _link_names() if _dead_owner(name)}):
        _remove_links(prefix)
        removed.append(f"{prefix}*")
    if removed:
        log.warning("removed leftovers of earlier multi-host runs: %s", ", ".join(removed))
    return removed


def _dead_owner(name) -> bool:
    match = NAME_PATTERN.match(name)
    if not match:
        return False
    try:
        os.kill(int(match.group(1), 36), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _base36(number) -> str:
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = _BASE36_DIGITS[digit] + text
        if number == 0:
            return text


def namespaces_unavailable_reason() -> str | None:
    """None when this process may make namespaced hosts, else why not (for a test's skip reason)."""
    try:
        with Network() as network:
            network.add_host(rate="1gbit")
    except NamespacesUnavailable as error:
        return str(error)
    return None


# -- the safety net (NOTE [ Namespace cleanup ]) -----------------------------------------------
_open_networks: set = set()
_safety_net_installed = False


def _close_all():
    for network in list(_open_networks):
        network.close(raise_errors=False)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def _install_safety_net():
    global _safety_net_installed
    if _safety_net_installed:
        return
    _safety_net_installed = True
    atexit.register(_close_all)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _exit_on_signal)
