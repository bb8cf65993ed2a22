"""Side-by-side timing of distrain against a peer (PyTorch) in one process.

A benchmark is a list of `Case`s. Each case has a setup function that builds the data once
and returns zero-argument step callables: "distrain" and "peer" always, and optionally
"floor" (the same step hand-written in NumPy: what zero engine overhead would cost). The
harness warms every callable up, then runs them in short alternating blocks (a fraction of
a second each, the starting contender rotating every round) until the time budget is spent,
so that drift in clock speed, cache state or a noisy neighbour falls on all contenders
alike. Every call is timed with time.perf_counter.

NOTE [ Settling between contenders ]
After a BLAS call, OpenBLAS (NumPy's BLAS, so distrain's) keeps its worker threads spinning
for about 0.1-0.2 s before they sleep, and PyTorch's OpenMP threads spin briefly too. With
as many threads as cores, whoever runs next loses cores to those spinners: measured on a
2-core machine, torch's MLP step ran at 2x its time for ~0.15 s after a NumPy block, so
blocks of a few calls made identical code look 1.5-1.9x slower. Each block therefore starts
with `settle_seconds` of untimed calls. Tuning the spinning away (OPENBLAS_THREAD_TIMEOUT,
OMP_WAIT_POLICY=PASSIVE) was rejected: it slows the small steps of one side or the other.

Results: the median and the p10/p90 per contender, the ratio of the medians
distrain/peer, and pass/fail against the case's target (ratio <= target). A readable
table goes to stdout, then one JSON line per case (with the machine's description), which
can also be appended to a results file (see benchmarks/results/README.md).

Threads. Both frameworks get the same count n:
  * NumPy's BLAS: `limit_threads_before_import(n)` sets OPENBLAS_NUM_THREADS,
    OMP_NUM_THREADS and MKL_NUM_THREADS; it must run before numpy is first imported
    (BLAS reads them once, at load). If threadpoolctl is installed,
    `apply_thread_limits(n)` also limits the loaded BLAS at run time; the JSON field
    "blas_threads_via" says which of the two ("threadpoolctl" or "env") was in force.
  * PyTorch: torch.set_num_threads(n) (the environment variables above apply to it too).

This is a script's helper, never a test: nothing here asserts on time.
"""
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CONTENDERS = ("distrain", "peer", "floor")  # the column order of the table


@dataclass
class Case:
    """One benchmark entry.

    setup() builds inputs and returns {"distrain": step, "peer": step[, "floor": step]};
    each step does one full unit of work (e.g. forward, backward, update) and returns nothing.
    A step on a GPU must synchronise before returning, or the time is only the launch.
    target is the largest acceptable distrain/peer ratio of medians (None: no target).
    flops, when given, is the floating-point work of one step: the JSON then has GFLOP/s.
    traffic, when given with flops, is the step's unavoidable memory traffic in bytes: the
    JSON then has the step's physical limit on this machine (NOTE [ Physical limit ]).
    """

    name: str
    setup: Callable[[], dict]
    target: float | None = None
    flops: float | None = None
    note: str = ""
    traffic: float | None = None


# NOTE [ Physical limit ]
# A lower bound on a step's time here, roofline-style: the larger of its FLOPs at the
# machine's float32 GEMM rate (NumPy's BLAS on 1024x1024 operands, with the benchmark's
# thread count) and its unavoidable memory traffic at the machine's copy bandwidth
# (bytes read + written by one large NumPy copy). Each is a bound on its own; their sum
# is not (traffic can overlap arithmetic, and a GEMM's operand reads are in its rate),
# and measured steps of the MLP came in under the sum. Each framework's fraction of
# the limit is limit / its median step time: how much of the machine it uses. What
# counts as unavoidable traffic is the benchmark's model (e.g.
# bench_nn_cpu.training_traffic); the rates are measured once per run.


def machine_rates() -> dict:
    """{"gemm_gflops": float32 GEMM rate, "copy_gbytes_per_s": copy bandwidth}, measured now (~2 s)."""
    import numpy

    def best_of(function, repeats):
        function()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            best = min(best, time.perf_counter() - start)
        return best

    rng = numpy.random.default_rng(0)
    a, b = (rng.standard_normal((1024, 1024)).astype(numpy.float32) for _ in range(2))
    gemm = 2 * 1024 ** 3 / best_of(lambda: a @ b, 10) / 1e9
    source = numpy.ones(32 * 1024 * 1024, dtype=numpy.float32)  # 128 MB: far beyond the caches
    target = numpy.empty_like(source)
    copy = 2 * source.nbytes / best_of(lambda: numpy.copyto(target, source), 5) / 1e9
    return {"gemm_gflops": round(gemm, 1), "copy_gbytes_per_s": round(copy, 1)}


def physical_limit(case: Case, rates: dict, medians: dict) -> dict:
    """The limit fields of a result (NOTE [ Physical limit ])."""
    compute_ms = case.flops / (rates["gemm_gflops"] * 1e9) * 1e3
    memory_ms = case.traffic / (rates["copy_gbytes_per_s"] * 1e9) * 1e3
    limit_ms = max(compute_ms, memory_ms)
    fields = {"limit_ms": round(limit_ms, 3), "limit_compute_ms": round(compute_ms, 3),
              "limit_memory_ms": round(memory_ms, 3), "traffic_mb": round(case.traffic / 1e6, 1), **rates}
    for name, median in medians.items():
        fields[f"{name}_fraction_of_limit"] = round(limit_ms / (median * 1e3), 3)
    return fields


def limit_threads_before_import(threads: int) -> None:
    """Pin the BLAS thread count through the environment; call before importing numpy."""
    if "numpy" in sys.modules:
        print("harness: numpy was imported before the thread limit was set; "
              "BLAS thread variables may be ignored", file=sys.stderr)
    for variable in BLAS_THREAD_VARIABLES:
        os.environ[variable] = str(threads)


def apply_thread_limits(threads: int) -> str:
    """Set torch's thread count and, where threadpoolctl exists, NumPy's BLAS; return which."""
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "env"
    threadpool_limits(limits=threads)  # the limit stays in force for the process
    return "threadpoolctl"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The commit the benchmarked code is at, "+dirty" when the work tree has changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=os.path.dirname(os.path.abspath(__file__)),
                              capture_output=True, text=True, timeout=10, check=False).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        if not commit:
            return "unknown"
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(threads: int, blas_threads_via: str) -> dict:
    import numpy
    import torch

    try:
        distrain_version = importlib.metadata.version("distrain")
    except importlib.metadata.PackageNotFoundError:
        distrain_version = "not installed"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "blas_threads_via": blas_threads_via,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "distrain": distrain_version,
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def default_results_path(results_dir: str) -> str:
    """benchmarks/results/<date>_<cpu>_<cores>c.jsonl: one file per date and machine."""
    slug = "".join(c if c.isalnum() else "-" for c in cpu_model().lower())
    slug = "-".join(part for part in slug.split("-") if part)[:48]
    day = datetime.date.today().isoformat()
    return os.path.join(results_dir, f"{day}_{slug}_{os.cpu_count()}c.jsonl")


def percentile(sorted_values: list, fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def time_steps(steps: dict, seconds: float, block_calls: int = 5, block_seconds: float = 0.3,
               settle_seconds: float = 0.2, warmup: int = 3) -> dict:
    """Alternate the steps in blocks until `seconds` are spent; return per-call times in seconds.

    A block is at least `block_calls` timed calls and at least `block_seconds`, after
    `settle_seconds` of untimed calls (see NOTE [ Settling between contenders ]). The first
    contender of a round rotates, and every contender goes first at least once.
    """
    names = [name for name in CONTENDERS if name in steps] + [name for name in steps if name not in CONTENDERS]
    for name in names:
        for _ in range(warmup):
            steps[name]()
    times = {name: [] for name in names}
    clock = time.perf_counter
    deadline = clock() + seconds
    round_index = 0
    while round_index < len(names) or clock() < deadline:
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            step, record = steps[name], times[name].append
            settle_end = clock() + settle_seconds
            while clock() < settle_end:
                step()
            block_end, calls = clock() + block_seconds, 0
            while calls < block_calls or clock() < block_end:
                start = clock()
                step()
                record(clock() - start)
                calls += 1
        round_index += 1
    return times


def summarise(case: Case, times: dict, machine: dict, rates: dict | None = None) -> dict:
    """The headline fields first (name, medians, ratio, target, pass), then the details."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {"name": case.name}
    result.update({f"{name}_ms": round(median * 1e3, 4) for name, median in medians.items()})
    result["ratio"] = round(medians["distrain"] / medians["peer"], 4)
    if "floor" in medians:  # what zero engine overhead would score: the best reachable ratio
        result["floor_ratio"] = round(medians["floor"] / medians["peer"], 4)
    result["target"] = case.target
    result["pass"] = None if case.target is None else result["ratio"] <= case.target
    for name, values in times.items():
        values = sorted(values)
        result[f"{name}_p10_ms"] = round(percentile(values, 0.10) * 1e3, 4)
        result[f"{name}_p90_ms"] = round(percentile(values, 0.90) * 1e3, 4)
        result[f"{name}_calls"] = len(values)
        if case.flops:
            result[f"{name}_gflops"] = round(case.flops / medians[name] / 1e9, 2)
    if rates and case.flops and case.traffic is not None:
        result.update(physical_limit(case, rates, medians))
    result["note"] = case.note
    result["machine"] = machine
    return result


def format_row(result: dict) -> str:
    def cell(name):
        if f"{name}_ms" not in result:
            return f"{'-':>24}"
        spread = f"({result[name + '_p10_ms']:.4g}-{result[name + '_p90_ms']:.4g})"
        return f"{result[name + '_ms']:.4g} {spread}".rjust(24)

    target = "-" if result["target"] is None else f"<={result['target']:.2f}"
    verdict = {None: "", True: "PASS", False: "FAIL"}[result["pass"]]
    floor_ratio = f"{result['floor_ratio']:.3f}" if "floor_ratio" in result else "-"
    return (f"{result['name']:<18}" + "".join(cell(name) for name in CONTENDERS)
            + f"{result['ratio']:8.3f}{floor_ratio:>11}{target:>8}  {verdict}")


def command_line(description: str, argv=None):
    """The options every benchmark script takes; sets the thread limit before numpy loads."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for NumPy's BLAS and for torch (default: all cores, %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time budget per case (default %(default)s)")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    parser.add_argument("--json", metavar="PATH", help="append one JSON line per case to PATH")
    parser.add_argument("--record", action="store_true",
                        help="append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl")
    args = parser.parse_args(argv)
    limit_threads_before_import(args.threads)
    return args


def run_selected(cases: list, args, results_dir: str) -> list:
    """run_cases for the cases `args.only` selects, recording where --json/--record say."""
    if args.only:
        cases = [case for case in cases if args.only in case.name]
    json_path = args.json or (default_results_path(results_dir) if args.record else None)
    return run_cases(cases, args.threads, args.seconds, json_path)


def run_under_mpiexec(script: str, ranks: int, arguments: list, timeout: float, backend: str = "mpi") -> int:
    """Run `ranks` copies of `python script --worker arguments...`: under the mpi extra's mpiexec,
    or (backend "ps") under `python -m distrain.launch -n ranks --backend ps`.

    One BLAS thread per rank (the ranks already fill the cores); returns the launcher's exit code.
    """
    script_argv = [os.path.abspath(script), "--worker", *arguments]
    if backend == "mpi":
        command = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(ranks), sys.executable,
                   *script_argv]
    else:
        command = [sys.executable, "-m", "distrain.launch", "-n", str(ranks), "--backend", backend, "--no-prefix",
                   *script_argv]
    env = dict(os.environ, **{variable: "1" for variable in BLAS_THREAD_VARIABLES})
    return subprocess.run(command, env=env, timeout=timeout).returncode


def emit_result(result: dict, results_dir: str, record: bool) -> None:
    """Print one result as a JSON line and, with record, append it to today's results file."""
    print(json.dumps(result))
    if record:
        with open(default_results_path(results_dir), "a") as out:
            out.write(json.dumps(result) + "\n")


def multi_rank_main(script: str, worker, argv, description: str, repeats: int, timeout: float,
                    backends: tuple = ("mpi",)) -> int:
    """The command line of a benchmark that runs as several ranks: parse, then either be one rank
    (`--worker`, calling worker(repeats, record)) or start the ranks (run_under_mpiexec)."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if len(backends) > 1:
        parser.add_argument("--backend", default=backends[0], choices=list(backends))
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.repeats, args.record)
    return run_under_mpiexec(script, args.ranks, ["--repeats", str(args.repeats)] + (["--record"] if args.record else []),
                             timeout=timeout, backend=getattr(args, "backend", backends[0]))


def run_cases(cases: list, threads: int, seconds: float, json_path: str | None = None) -> list:
    """Time every case, print the table and the JSON lines, append them to json_path."""
    machine = machine_info(threads, apply_thread_limits(threads))
    print(f"# {machine['cpu']}, {machine['cores']} cores, {threads} threads "
          f"(BLAS via {machine['blas_threads_via']}), numpy {machine['numpy']}, "
          f"torch {machine['torch']}, {seconds:g} s per case")
    header = f"{'case':<18}" + "".join(f"{name + ' ms (p10-p90)':>24}" for name in CONTENDERS)
    print(header + f"{'ratio':>8}{'floor/peer':>11}{'target':>8}")
    rates = machine_rates() if any(case.flops and case.traffic is not None for case in cases) else None
    results = []
    for case in cases:
        result = summarise(case, time_steps(case.setup(), seconds), machine, rates)
        print(format_row(result), flush=True)
        if "limit_ms" in result:
            fractions = ", ".join(f"{name} {result[f'{name}_fraction_of_limit']:.0%}" for name in CONTENDERS
                                  if f"{name}_fraction_of_limit" in result)
            print(f"{'':<18}limit {result['limit_ms']:.4g} ms = the larger of {case.flops / 1e9:.3g} GFLOP at "
                  f"{rates['gemm_gflops']:g} GFLOP/s ({result['limit_compute_ms']:.3g} ms) and "
                  f"{result['traffic_mb']:g} MB at {rates['copy_gbytes_per_s']:g} GB/s "
                  f"({result['limit_memory_ms']:.3g} ms); fraction reached: {fractions}", flush=True)
        results.append(result)
    print("# ratio = distrain / peer (medians); floor = the same step in plain NumPy, "
          "floor/peer = the ratio zero engine overhead would reach")
    lines = [json.dumps(result) for result in results]
    print("\n".join(lines))
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "a") as results_file:
            results_file.write("".join(line + "\n" for line in lines))
        print(f"# appended {len(lines)} line(s) to {json_path}")
    return results
