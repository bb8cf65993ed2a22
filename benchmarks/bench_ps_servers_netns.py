"""Parameter-server push+pull round trips with every server on a host of its own, against raw pyzmq.

    python benchmarks/bench_ps_servers_netns.py [--rate 500mbit] [--worker-rate 2gbit] [--sizes-mb 4,16]
        [--servers 1,2] [--workers 1,2,4] [--repeats 3] [--warmup 1] [--record]        (as root)
    python benchmarks/bench_ps_servers_netns.py --sizes-mb 100 --workers 4 --record   # the 100 MiB figures

bench_ps.py on loopback cannot show what several servers are for: there every process shares
the machine's cores, and two cores, not servers, bound the bandwidth. In a cluster each
server has a network link of its own. This script builds that with network namespaces
(tests/multihost/hosts.py): each server on a host whose link is shaped to --rate (both
ways, like a full-duplex NIC), each worker on a host of its own with a faster link
(--worker-rate: at least twice what two servers' links carry, so that a worker's own link
never bounds it), all on one private bridge. The rate is low enough that the links, not the
cores, are the bottleneck: the table shows how busy the machine was while the workers ran
their rounds (all cores, sampled every 0.25 s: "machine", where other users of the machine
count too; "own", this benchmark's processes alone), which must stay well below 100%, and
the servers' CPU seconds, distrain's (with its MACs) beside the raw servers'; "drops":
packets the servers' shaped queues dropped.

Each configuration (size, S servers, W workers) starts S distrain servers, the real way:
`python -m distrain.comm.ps.server --bind tcp://<host address>:0 --secret-file F` (beyond
loopback, so every message carries a MAC; protocol.py), and S raw pyzmq servers on the
same hosts (bench_ps.raw_server); then W workers (bench_ps.worker, with the secret in
$DISTRAIN_PS_SECRET) time both contenders round by round, alternating which goes first:
distrain's PSCommunicator.allreduce over the S servers, and the same bytes through raw
ROUTER/DEALER sockets, cut into S slices (bench_ps.py's docstring describes both).
Throughput = W x size / median round time, as in bench_ps.py.

What the links allow: a server's link carries W x size / S in and as much out per round.
Sent one after the other, that is 2 W size / (S rate); overlapped (the pull of one part
while the next is pushed) W size / (S rate). So the link-bound throughput lies between
S x rate / 2 and S x rate ("link-bound"; "distrain/link" is distrain's fraction of the
upper end), and doubling the servers doubles it. The raw contender answers a slice only
once it has it whole, so it can reach only the lower end; distrain splits an allreduce
larger than a partition (4 MiB) and overlaps, so on links it can beat raw by up to 2x. An
allreduce of at most one partition (4 MiB) is not split and goes to server 0 alone
(partitions.py): a second server cannot speed it up. Targets (issue 16): distrain >= 0.8x
raw's throughput at 100 MB; with 4 workers, 2 servers >= 1.5x one server's throughput.

Sizes and rate: a 100 MiB round trip with 4 workers on one server moves 400 MiB each way
through its link: 7-13 s at 500 Mbit/s (34 s at 200 Mbit/s), so the whole grid at 100 MiB
takes about 5 minutes at 500 Mbit/s. The default run is therefore 4 and 16 MiB (2 minutes),
and the 100 MiB figures come from runs of their own (the second command above).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHMARKS)
sys.path.insert(0, os.path.dirname(BENCHMARKS))  # the repository: tests.multihost.hosts
import bench_ps  # noqa: E402  (reused: the workers' rounds and the raw server)
import harness  # noqa: E402

from distrain.comm.ps.partitions import DEFAULT_PARTITION_BYTES  # noqa: E402
from tests.multihost.hosts import Network, NamespacesUnavailable, first_line, parse_rate  # noqa: E402

RESULTS_DIR = os.path.join(BENCHMARKS, "results")
RESULT_MARK = "RESULT "  # a child's line carrying what it reports (anything else on stdout is ignored)
START_TIMEOUT = 60.0
SAMPLE_SECONDS = 0.25


class PrintedQueue:
    """What bench_ps's functions `put` their results into, for a child started inside a namespace (no
    multiprocessing queue crosses `ip netns exec`): each put is one marked JSON line on stdout."""

    def put(self, value):
        print(RESULT_MARK + json.dumps(value), flush=True)


def child(spec):
    """One process inside a host: a raw server or a worker (bench_ps's own functions)."""
    if spec["role"] == "raw_server":
        bench_ps.raw_server(spec["world"], spec["slice_bytes"], PrintedQueue(), host=spec["host"])
    else:
        import distrain.comm.ps.client  # noqa: F401  (imported before "ready": the CPU window leaves imports out)
        PrintedQueue().put({"ready": time.monotonic()})  # CLOCK_MONOTONIC: one clock for every process here
        bench_ps.WARMUP_ROUNDS = spec["warmup"]
        bench_ps.worker(spec["rank"], spec["world"], spec["distrain_addresses"], spec["raw_addresses"],
                        spec["nbytes"], spec["repeats"], PrintedQueue())
        PrintedQueue().put({"ended": time.monotonic()})
    return 0


class CpuSampler:
    """The machine's busy fraction (all cores, /proc/stat) and some processes' CPU seconds, sampled in a thread
    every SAMPLE_SECONDS with the time of each sample, so that a window (the workers' rounds) can be cut out."""

    def __init__(self, pids):
        self.pids = dict(pids)  # role -> [pid]
        self.samples = []  # (monotonic time, busy fraction since the previous sample, {pid: utime + stime seconds})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _machine():
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def _run(self):
        ticks = os.sysconf("SC_CLK_TCK")
        last, seconds = self._machine(), {}
        while not self._stop.wait(SAMPLE_SECONDS):
            now = self._machine()
            for pid in (pid for pids in self.pids.values() for pid in pids):
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                    seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (all its threads)
                except (OSError, IndexError):
                    pass  # exited: its last reading stands
            if now[1] > last[1]:
                self.samples.append((time.monotonic(), (now[0] - last[0]) / (now[1] - last[1]), dict(seconds)))
            last = now

    def window(self, start, stop):
        """Busy fractions (mean, p90, max) of the samples in [start, stop], and each role's CPU seconds there."""
        inside = [sample for sample in self.samples if start + SAMPLE_SECONDS <= sample[0] <= stop]
        if len(inside) < 2:  # a window too short to measure
            return {"samples": len(inside), "machine_busy_mean": math.nan, "machine_busy_p90": math.nan,
                    "machine_busy_max": math.nan, "own_processes_busy": math.nan,
                    **{f"{role}_cpu_s": math.nan for role in self.pids}}
        busy = sorted(sample[1] for sample in inside)
        first, last = inside[0][2], inside[-1][2]
        seconds = inside[-1][0] - inside[0][0]
        roles = {f"{role}_cpu_s": sum(last.get(pid, 0.0) - first.get(pid, 0.0) for pid in pids)
                 for role, pids in self.pids.items()}
        return {"samples": len(inside), "seconds": seconds,
                "machine_busy_mean": statistics.mean(busy), "machine_busy_p90": harness.percentile(busy, 0.9),
                "machine_busy_max": busy[-1],
                # the benchmark's own processes alone (the machine's figure counts other users too; neither counts
                # all of the kernel's work for the links, some of which is charged to whoever it interrupts)
                "own_processes_busy": sum(roles.values()) / seconds / os.cpu_count(), **roles}


def collect(process, what, timeout):
    """The marked JSON lines a child printed, once it has exited 0; an error with its stderr otherwise."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish within {timeout:g} s") from None
    if process.returncode != 0:
        raise RuntimeError(f"{what} exited with {process.returncode}: {stderr.strip()[-3000:]}")
    return [json.loads(line[len(RESULT_MARK):]) for line in stdout.splitlines() if line.startswith(RESULT_MARK)]


def measure(server_hosts, worker_hosts, secret_file, secret, size_mb, servers, workers, repeats, warmup,
            round_seconds):
    """({"distrain": [round seconds], "raw": [...]}, cpu): each timed round's slowest worker, and CpuSampler.window
    over the workers' rounds."""
    nbytes = int(size_mb * 2 ** 20) // 4 * 4
    slice_bytes = -(-nbytes // 4 // servers) * 4
    python = sys.executable
    quiet = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    distrain_servers = [host.popen([python, "-m", "distrain.comm.ps.server", "--world-size", workers, "--bind",
                                    f"tcp://{host.address}:0", "--secret-file", secret_file, "--quiet"], **quiet)
                        for host in server_hosts[:servers]]
    distrain_addresses = [first_line(process, START_TIMEOUT, f"distrain server on {host.namespace}")
                          for process, host in zip(distrain_servers, server_hosts)]
    raw_servers = [host.popen([python, __file__, "--child", json.dumps(
        {"role": "raw_server", "world": workers, "slice_bytes": slice_bytes, "host": host.address})], **quiet)
        for host in server_hosts[:servers]]
    raw_addresses = [first_line(process, START_TIMEOUT, f"raw server on {host.namespace}")
                     for process, host in zip(raw_servers, server_hosts)]
    raw_addresses = [json.loads(line[len(RESULT_MARK):]) for line in raw_addresses]
    environment = dict(os.environ, DISTRAIN_PS_SECRET=secret, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    ranks = [worker_hosts[rank].popen([python, __file__, "--child", json.dumps(
        {"role": "worker", "rank": rank, "world": workers, "distrain_addresses": distrain_addresses,
         "raw_addresses": raw_addresses, "nbytes": nbytes, "repeats": repeats, "warmup": warmup})],
        env=environment, **quiet) for rank in range(workers)]
    timeout = START_TIMEOUT + 4 * 2 * (repeats + warmup) * round_seconds
    pids = {"distrain_servers": [p.pid for p in distrain_servers], "raw_servers": [p.pid for p in raw_servers],
            "workers": [p.pid for p in ranks]}
    start = time.monotonic()
    with CpuSampler(pids) as sampler:
        per_rank, moments = {}, {"ready": [], "ended": []}
        for rank, process in enumerate(ranks):
            for line in collect(process, f"worker {rank} on {worker_hosts[rank].namespace}",
                                max(1.0, timeout - (time.monotonic() - start))):
                if isinstance(line, dict):  # {"ready": t} or {"ended": t}
                    for moment, value in line.items():
                        moments[moment].append(value)
                else:
                    per_rank[line[0]] = line[1]
        for process, host in zip(distrain_servers + raw_servers, server_hosts[:servers] * 2):
            collect(process, f"a server on {host.namespace}", 30)
    # the window: every worker has imported everything, until the first has finished its rounds
    cpu = sampler.window(max(moments["ready"]), min(moments["ended"]))
    times = {name: [max(per_rank[rank][name][index] for rank in per_rank) for index in range(repeats)]
             for name in ("distrain", "raw")}
    return times, cpu


HEADER = (f"{'MiB':>5}{'servers':>8}{'workers':>8}{'distrain ms':>13}{'raw ms':>9}{'distrain MB/s':>15}{'raw MB/s':>10}"
          f"{'distrain/raw':>14}{'link-bound MB/s':>17}{'distrain/link':>15}{'cpu: machine/own':>18}"
          f"{'server cpu s distrain/raw':>27}{'drops':>7}")


def link_changes(hosts, before):
    """Each host's link counters since `before` (Host.link_statistics), summed over the hosts."""
    total = {}
    for host, earlier in zip(hosts, before):
        for direction, counters in host.link_statistics().items():
            for name, value in counters.items():
                key = f"{direction}_{name}"
                total[key] = total.get(key, 0) + value - earlier[direction][name]
    return total


def run_case(args, server_hosts, worker_hosts, secret_file, secret, size, servers, workers, machine):
    """Measure one configuration, print its row and its JSON line; returns {"distrain"|"raw": MB/s}."""
    server_bytes_per_s = parse_rate(args.rate) / 8
    round_seconds = 2 * workers * size * 2 ** 20 / servers / server_bytes_per_s
    before = [host.link_statistics() for host in server_hosts[:servers]]
    times, cpu = measure(server_hosts, worker_hosts, secret_file, secret, size, servers, workers,
                         args.repeats, args.warmup, round_seconds)
    links = link_changes(server_hosts[:servers], before)
    medians = {name: statistics.median(values) for name, values in times.items()}
    rates = {name: workers * size * 2 ** 20 / seconds / 1e6 for name, seconds in medians.items()}
    ratio = rates["distrain"] / rates["raw"]
    bound = (servers * server_bytes_per_s / 2e6, servers * server_bytes_per_s / 1e6)
    drops = links["sent_dropped"] + links["received_dropped"]
    print(f"{size:>5g}{servers:>8}{workers:>8}{medians['distrain'] * 1e3:>13.0f}{medians['raw'] * 1e3:>9.0f}"
          f"{rates['distrain']:>15.1f}{rates['raw']:>10.1f}{ratio:>14.2f}{f'{bound[0]:.0f}..{bound[1]:.0f}':>17}"
          f"{rates['distrain'] / bound[1]:>15.2f}"
          f"{format(cpu['machine_busy_mean'], '.0%') + '/' + format(cpu['own_processes_busy'], '.0%'):>18}"
          f"{format(cpu['distrain_servers_cpu_s'], '.1f') + '/' + format(cpu['raw_servers_cpu_s'], '.1f'):>27}"
          f"{drops:>7}", flush=True)
    harness.emit_result({
        "name": f"ps_round_trip_netns_{size:g}MiB_{servers}servers_{workers}workers",
        "size_mib": size, "servers": servers, "workers": workers,
        "server_link": args.rate, "worker_link": args.worker_rate,
        "distrain_ms": medians["distrain"] * 1e3, "raw_ms": medians["raw"] * 1e3,
        "distrain_mbytes_per_s": rates["distrain"], "raw_mbytes_per_s": rates["raw"],
        "distrain_over_raw_throughput": ratio, "link_bound_mbytes_per_s": list(bound),
        "distrain_over_link_bound": rates["distrain"] / bound[1], "rounds": args.repeats, "warmup": args.warmup,
        "distrain_rounds_ms": [t * 1e3 for t in times["distrain"]], "raw_rounds_ms": [t * 1e3 for t in times["raw"]],
        "cpu": cpu, "server_links": links, "load_average": os.getloadavg()[0],
        "targets": "distrain_over_raw_throughput >= 0.8 at 100 MiB; 2 servers >= 1.5x 1 server with 4 workers",
        "machine": machine}, RESULTS_DIR, args.record)
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", default="500mbit", help="each server host's link, both ways (default 500mbit)")
    parser.add_argument("--worker-rate", default="2gbit", help="each worker host's link (default 2gbit)")
    parser.add_argument("--sizes-mb", default="4,16", help="array sizes in MiB (default 4,16)")
    parser.add_argument("--servers", default="1,2", help="server counts (default 1,2)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    sizes = [float(value) for value in args.sizes_mb.split(",")]
    server_counts = [int(value) for value in args.servers.split(",")]
    worker_counts = [int(value) for value in args.workers.split(",")]
    try:  # refused here, before any host is made
        parse_rate(args.rate), parse_rate(args.worker_rate)
    except ValueError as error:
        parser.error(str(error))
    machine = harness.machine_info(1, "env")
    secret = os.urandom(32).hex()
    private = tempfile.mkdtemp(prefix="distrain-bench-netns-")  # mode 700
    secret_file = os.path.join(private, "secret")
    with open(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(secret + "\n")
    throughput = {}
    try:
        with Network() as network:
            server_hosts = [network.add_host(rate=args.rate) for _ in range(max(server_counts))]
            worker_hosts = [network.add_host(rate=args.worker_rate) for _ in range(max(worker_counts))]
            print(f"# {machine['cpu']}, {machine['cores']} cores; servers on {len(server_hosts)} namespaced hosts at "
                  f"{args.rate}, workers on {len(worker_hosts)} at {args.worker_rate} ({network.subnet}.0/24); "
                  f"medians over {args.repeats} rounds after {args.warmup}; throughput = workers x size / time; "
                  "link-bound MB/s: S x rate / 2 (push, then pull) .. S x rate (overlapped)")
            print(HEADER)
            for size in sizes:
                for servers in server_counts:
                    for workers in worker_counts:
                        throughput[size, servers, workers] = run_case(
                            args, server_hosts, worker_hosts, secret_file, secret, size, servers, workers,
                            machine)
    except NamespacesUnavailable as error:
        parser.exit(2, f"bench_ps_servers_netns: {error}\n")
    finally:
        os.remove(secret_file)
        os.rmdir(private)
    for size in sizes:
        one, two = throughput.get((size, 1, 4)), throughput.get((size, 2, 4))
        if one and two:
            note = (f" (one partition: an allreduce of at most {DEFAULT_PARTITION_BYTES // 2 ** 20} MiB is not split, "
                    "so it uses server 0 alone)") if size * 2 ** 20 <= DEFAULT_PARTITION_BYTES else ""
            print(f"# {size:g} MiB, 4 workers: 2 servers / 1 server throughput: distrain "
                  f"{two['distrain'] / one['distrain']:.2f}, raw {two['raw'] / one['raw']:.2f} "
                  f"(target: distrain >= 1.5){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
