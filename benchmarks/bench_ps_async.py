"""Asynchronous parameter-server training (issue 16): convergence per staleness bound, and a straggler.

    python benchmarks/bench_ps_async.py [--part convergence|straggler|all] [--repeats 2] [--seconds 15]
                                        [--sleep-ms 20] [--record]

Every run is a job of 4 ranks started by `python -m distrain.launch -n 4 --backend ps`, in a
scratch directory (its runs/ and files never land in the repository), the modes interleaved
run by run so that load from other processes falls on all of them alike. The 1-minute load
average is recorded before and after each run.

convergence  The main job (the trainer: a small CNN on scikit-learn's digits, 30 epochs, Adam)
             in synchronous mode and in asynchronous mode with K = 0, 2, 8 and inf. Final and
             best test accuracy are read from the run's metrics.jsonl, training time is the sum
             of rank 0's step times there, wall time the launcher's whole run (start-up
             included). Target: >= 97% for every K. K = 0 trains bit for bit as sync does
             (NOTE [ Stale synchronous parallel ]): the same accuracies are the check of that.

straggler    Samples/s of the 4 ranks together when one is slowed 2x, for sync, async K=8 and
             async K=inf. The machine may have fewer cores than ranks, so each step's time is
             made of a controlled sleep (--sleep-ms; twice as long on the slow rank), then a
             small MLP's forward, backward and step (0.3 ms alone; 3-5 ms with the push and pull
             on 2 cores shared by 4 ranks, the server and other jobs): the sleep dominates, so
             this measures the protocol, not core contention. Each rank draws its own batches,
             so a fast rank trains on more samples; every rank stops at the same wall-clock
             budget (--seconds after a start barrier), and samples count when their step ended
             within it. Rank 0 then pulls the servers' parameters and measures test accuracy.
             Two scenarios:
               persistent  rank 3 is always the slow one (the issue's wording)
               rotating    the slow role moves to the next rank every 16 of a rank's own steps
                           (a transient straggler: what a staleness bound is for)

The arithmetic of the straggler (s = the fast step, 2s the slow one, 4 ranks, run of T seconds):
  sync         every step waits for the slow rank: 4 x T / 2s steps, rate 2/s
  async K=inf  nobody waits: 3 x T/s + T/2s steps, rate 3.5/s: 1.75x sync
  async K      persistent straggler: a fast rank may be at most K steps ahead of rank 3, so
               after its first K extra steps it runs at rank 3's pace: 4 x T/2s + 3K steps,
               1 + 3K x 2s / (4T) times sync -- 1.02x for K=8, s=20 ms, T=15 s. No finite K
               gives 1.5x in a long run: that needs T <= 3K x 2s / (4 x 0.5) = 3Ks (0.48 s for
               K=8, s=20 ms). Rotating straggler: each rank is slow 1/4 of its steps, so its
               mean step is 1.25s and the job's rate 3.2/s (1.6x sync) as long as the slow
               phase (16 steps, falling 8 behind) stays within the bound; K=8 allows it.
Target (issue 16): async K=8 >= 1.5x sync's samples/s with one worker slowed 2x.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
RANKS = 4
CONVERGENCE_MODES = (("sync", None), ("async", "0"), ("async", "2"), ("async", "8"), ("async", "inf"))
STRAGGLER_MODES = (("sync", None), ("async", "8"), ("async", "inf"))
SCENARIOS = ("persistent", "rotating")
SLOW_RANK = RANKS - 1  # persistent scenario: rank 0 (which evaluates) stays fast
ROTATION_STEPS = 16  # rotating scenario: a rank's own steps per slow or fast phase
BATCH = 32
LR, MOMENTUM = 0.05, 0.9
HIDDEN = 64
ARITHMETIC = {  # the module docstring's, for the results file (s: a fast rank's step, 2s the slow one's)
    "persistent": "sync: every step waits for the slow rank, 4 ranks x 1 step per 2s; async K=inf: 3/s + 1/2s, "
                  "1.75x sync; async K: fast ranks stay within K steps of the slow one, so a run of T seconds "
                  "gains only their first 3K steps: 1 + 3K x 2s / 4T over sync (1.02 for K=8, s=20 ms, T=15 s); "
                  "1.5x needs T <= 3Ks (0.48 s): no bounded K reaches it in a long run",
    "rotating": "each rank is slow for 16 of its steps in 64 (mean step 1.25s): 3.2 steps per s in all, 1.6x "
                "sync's 2 per s, when the bound allows the 8 steps a slow phase falls behind (K >= 8)",
}
TIMEOUT_SECONDS = 20.0  # the ranks' communicator timeout (a push held at the very end waits this long)


# -- the driver ------------------------------------------------------------------------------------------------
def mode_label(mode, staleness):
    return "sync" if mode == "sync" else f"async_k{staleness}"


def rotated(modes, repeat):
    """The modes in the order of run `repeat`: each goes first in turn, so drift in load falls on all alike."""
    shift = repeat % len(modes)
    return modes[shift:] + modes[:shift]


def launcher_command(mode, staleness, *arguments):
    command = [sys.executable, "-m", "distrain.launch", "-n", str(RANKS), "--backend", "ps"]
    if mode == "async":
        command += ["--ps-mode", "async", "--staleness", staleness]
    return command + list(arguments)


def run_job(command, cwd, log_path, timeout):
    """Run one launcher job; (wall seconds, load before, load after). Its output goes to log_path."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                              env=dict(os.environ, **{variable: "1" for variable in harness.BLAS_THREAD_VARIABLES}),
                              ).returncode
    wall = time.perf_counter() - start
    if code != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise SystemExit(f"bench_ps_async: {' '.join(command)} exited with {code}; its output ends:\n{tail}")
    return wall, load_before, os.getloadavg()[0]


def read_metrics(run_dir):
    lines = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as metrics:
        for line in metrics:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a torn last line (metrics.py): not expected here, skipped as its readers do
    return lines


def convergence(args, scratch, machine):
    rows = {mode_label(*mode): [] for mode in CONVERGENCE_MODES}
    for repeat in range(args.repeats):
        for mode, staleness in rotated(CONVERGENCE_MODES, repeat):
            label = mode_label(mode, staleness)
            run_dir = os.path.join(scratch, f"convergence_{label}_{repeat}")
            command = launcher_command(mode, staleness, "--set", f"run_dir={run_dir}", "--set", "tensorboard=false",
                                       "--set", "plot=false")
            wall, load_before, load_after = run_job(command, scratch, run_dir + ".log", timeout=900)
            lines = read_metrics(run_dir)
            evals = [line for line in lines if line["kind"] == "eval"]
            train = [line for line in lines if line["kind"] == "train"]
            row = {"final_accuracy": evals[-1]["accuracy"], "best_accuracy": max(e["accuracy"] for e in evals),
                   "steps": train[-1]["step"], "train_seconds": sum(line["step_s"] for line in train),
                   "wall_seconds": wall, "load_before": load_before, "load_after": load_after}
            row.update({key: value for key, value in train[-1].items() if "stale" in key})  # rank 0's, last step
            histograms = {line["rank"]: line["counts"] for line in lines if line["kind"] == "staleness"}
            if histograms:  # each rank's {staleness: steps} as counts[staleness], at the last evaluation
                row["staleness_counts_per_rank"] = [histograms[rank] for rank in sorted(histograms)]
            rows[label].append(row)
            print(f"  {label:<12} run {repeat}: final {row['final_accuracy']:.2%}  best {row['best_accuracy']:.2%}  "
                  f"train {row['train_seconds']:.1f} s  wall {wall:.1f} s  (load {load_before:.2f} -> "
                  f"{load_after:.2f})", flush=True)
    sync_train = statistics.median(row["train_seconds"] for row in rows["sync"])
    print(f"\n# digits job, {RANKS} ranks on the parameter server; medians over {args.repeats} runs (min-max)")
    print(f"{'mode':<14}{'final acc %':>22}{'best acc %':>22}{'train s':>22}{'wall s':>22}{'train / sync':>14}")
    for label, runs in rows.items():
        def cell(key, scale=1.0, fmt="{:.2f}"):
            values = [run[key] * scale for run in runs]
            return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

        train = statistics.median(run["train_seconds"] for run in runs)
        print(f"{label:<14}{cell('final_accuracy', 100):>22}{cell('best_accuracy', 100):>22}"
              f"{cell('train_seconds'):>22}{cell('wall_seconds'):>22}{train / sync_train:>14.2f}")
        result = {"name": f"ps_async_digits_{label}", "ranks": RANKS, "mode": label,
                  "final_accuracy": statistics.median(run["final_accuracy"] for run in runs),
                  "best_accuracy": statistics.median(run["best_accuracy"] for run in runs),
                  "train_seconds": train, "wall_seconds": statistics.median(run["wall_seconds"] for run in runs),
                  "train_seconds_over_sync": train / sync_train, "runs": runs,
                  "target": "final_accuracy >= 0.97",
                  "pass": all(run["final_accuracy"] >= 0.97 for run in runs),
                  "note": "the trainer's digits job (cnn, 30 epochs, adam, batch 32 per rank), 4 ranks, 1 server",
                  "machine": machine}
        harness.emit_result(result, RESULTS_DIR, args.record)


def straggler(args, scratch, machine):
    this_script = os.path.abspath(__file__)
    rows = {(scenario, mode_label(*mode)): [] for scenario in SCENARIOS for mode in STRAGGLER_MODES}
    for repeat in range(args.repeats):
        for scenario in SCENARIOS:
            for mode, staleness in rotated(STRAGGLER_MODES, repeat):
                label = mode_label(mode, staleness)
                out = os.path.join(scratch, f"straggler_{scenario}_{label}_{repeat}")
                os.makedirs(out)
                command = launcher_command(mode, staleness, "--no-prefix", this_script, "--worker",
                                           "--scenario", scenario, "--seconds", str(args.seconds),
                                           "--sleep-ms", str(args.sleep_ms), "--out", out)
                wall, load_before, load_after = run_job(command, scratch, out + ".log",
                                                        timeout=args.seconds + 4 * TIMEOUT_SECONDS + 120)
                ranks = [json.load(open(os.path.join(out, f"rank{rank}.json"))) for rank in range(RANKS)]
                evaluation = json.load(open(os.path.join(out, "eval.json")))
                row = {"samples_per_s": sum(r["samples"] for r in ranks) / args.seconds,
                       "samples_per_rank": [r["samples"] for r in ranks],
                       "accuracy": evaluation["accuracy"], "wait_seconds_per_rank": [r["wait_seconds"] for r in ranks],
                       "staleness_histogram_rank0": ranks[0]["staleness_histogram"],
                       "ended_by_timeout": [r["rank"] for r in ranks if r["ended_by_timeout"]],
                       "wall_seconds": wall, "load_before": load_before, "load_after": load_after}
                rows[scenario, label].append(row)
                held = f"  last push held until the timeout: ranks {row['ended_by_timeout']}" \
                    if row["ended_by_timeout"] else ""
                print(f"  {scenario:<11}{label:<13}run {repeat}: {row['samples_per_s']:8.0f} samples/s  per rank "
                      f"{row['samples_per_rank']}  accuracy {row['accuracy']:.2%}  (load {load_before:.2f} -> "
                      f"{load_after:.2f}){held}", flush=True)
    print(f"\n# {RANKS} ranks, one slowed 2x (sleep {args.sleep_ms:g} / {2 * args.sleep_ms:g} ms per step + a small "
          f"MLP), {args.seconds:g} s per run; medians over {args.repeats} runs (min-max)")
    print(f"{'scenario':<12}{'mode':<14}{'samples/s':>22}{'x sync':>18}{'accuracy':>20}")
    for scenario in SCENARIOS:
        sync_rates = [row["samples_per_s"] for row in rows[scenario, "sync"]]
        for mode in STRAGGLER_MODES:
            label = mode_label(*mode)
            runs = rows[scenario, label]
            rates = [row["samples_per_s"] for row in runs]
            ratios = [rate / sync for rate, sync in zip(rates, sync_rates)]  # run by run: same round, same load
            accuracies = [row["accuracy"] * 100 for row in runs]
            print(f"{scenario:<12}{label:<14}{statistics.median(rates):>10.0f} ({min(rates):.0f}-{max(rates):.0f})"
                  f"{statistics.median(ratios):>8.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                  f"{statistics.median(accuracies):>8.2f} ({min(accuracies):.2f}-{max(accuracies):.2f})")
            result = {"name": f"ps_async_straggler_{scenario}_{label}", "ranks": RANKS, "mode": label,
                      "scenario": scenario, "samples_per_s": statistics.median(rates),
                      "samples_per_s_over_sync": statistics.median(ratios), "ratios_run_by_run": ratios,
                      "accuracy": statistics.median(accuracies) / 100, "seconds": args.seconds,
                      "sleep_ms": args.sleep_ms, "slow_sleep_ms": 2 * args.sleep_ms, "runs": runs,
                      "target": "async_k8 samples_per_s_over_sync >= 1.5" if label == "async_k8" else None,
                      "pass": statistics.median(ratios) >= 1.5 if label == "async_k8" else None,
                      "expected_over_sync": expected_ratio(scenario, label, args.seconds, args.sleep_ms / 1e3),
                      "arithmetic": ARITHMETIC[scenario],
                      "note": ("rank 3 always" if scenario == "persistent"
                               else "the slow role rotates every 16 steps; a rank")
                              + f" sleeps 2x; each step a {BATCH}-sample batch on a 64-{HIDDEN}-10 MLP, SGD lr {LR} "
                              f"momentum {MOMENTUM}; samples counted when their step ended within the budget",
                      "machine": machine}
            harness.emit_result(result, RESULTS_DIR, args.record)


def expected_ratio(scenario, label, seconds, fast_step):
    """Samples/s over sync's if steps took exactly their sleeps (the arithmetic of the module docstring)."""
    sync_steps = RANKS * seconds / (2 * fast_step)
    if label == "sync":
        return 1.0
    if label == "async_kinf":
        return ((RANKS - 1) / fast_step + 1 / (2 * fast_step)) * seconds / sync_steps if scenario == "persistent" \
            else RANKS / 1.25 * seconds / fast_step / sync_steps
    k = int(label.rsplit("k", 1)[1])
    if scenario == "persistent":
        return (sync_steps + (RANKS - 1) * k) / sync_steps
    return RANKS / 1.25 * seconds / fast_step / sync_steps if ROTATION_STEPS / 2 <= k else None


# -- one rank of a straggler run (started by the launcher) -----------------------------------------------------
def straggler_rank(args):
    import numpy as np
    from sklearn.datasets import load_digits

    import distrain
    import distrain.distributed as dist
    import distrain.nn as nn
    from distrain.errors import DistrainError
    from distrain.parallel import DistributedDataParallel

    comm = dist.init(timeout=TIMEOUT_SECONDS)
    rank = comm.rank
    digits = load_digits()
    images, labels = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    test, train = order[:len(order) // 5], order[len(order) // 5:]
    distrain.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10)))
    optimizer = distrain.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    draw = np.random.default_rng(1000 + rank)

    def slow(step):
        if args.scenario == "persistent":
            return rank == SLOW_RANK
        return (step // ROTATION_STEPS) % RANKS == rank

    def step(number):
        time.sleep(args.sleep_ms / 1e3 * (2 if slow(number) else 1))
        batch = draw.choice(train, BATCH)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(distrain.tensor(images[batch])), distrain.tensor(labels[batch])).backward()
        optimizer.step()

    step(0)  # registers with the servers (async) or makes the first allreduce (sync), untimed
    comm.barrier()
    start = time.monotonic()
    deadline = start + args.seconds
    steps = counted = 0
    wait_at_start = model.communication_wait_seconds
    ended_by_timeout = False
    while time.monotonic() < deadline:
        try:
            step(steps + 1)
        except DistrainError:
            # a push answered only when a rank that has stopped steps again (it was released the moment the
            # slowest rank's last step was): the answer expires after the timeout; nothing after the deadline counts
            if time.monotonic() < deadline:
                raise
            ended_by_timeout = True
            break
        steps += 1
        if time.monotonic() <= deadline:
            counted += 1
    result = {"rank": rank, "steps": steps, "samples": counted * BATCH, "ended_by_timeout": ended_by_timeout,
              "wait_seconds": model.communication_wait_seconds - wait_at_start,
              "staleness_histogram": {str(k): v for k, v in sorted((model.staleness_histogram or {}).items())}}
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as out:
        json.dump(result, out)
    if rank == 0:
        evaluate(model, images[test], labels[test], args.out, ended_by_timeout)
    try:
        dist.shutdown()
    except DistrainError as error:  # after a held push timed out: the servers may still count a request of it
        print(f"rank {rank}: shutdown: {error}", file=sys.stderr)
    return 0


def evaluate(model, images, labels, out, ended_by_timeout):
    """Rank 0: once every rank has written its result (none pushes any more), the servers' parameters' accuracy."""
    import distrain

    until = time.monotonic() + 4 * TIMEOUT_SECONDS
    while not all(os.path.exists(os.path.join(out, f"rank{rank}.json")) for rank in range(RANKS)):
        if time.monotonic() > until:
            raise SystemExit("bench_ps_async: the other ranks did not finish")
        time.sleep(0.05)
    if model._served is not None and not ended_by_timeout:
        # asynchronous: the latest parameters, by rank 0 alone (DistributedDataParallel.pull_parameters() is a
        # collective, whose barrier a rank still held in its last push would make everyone wait for)
        model._served.pull()
    with distrain.no_grad():
        predicted = model(distrain.tensor(images)).numpy().argmax(axis=1)
    with open(os.path.join(out, "eval.json"), "w") as file:
        json.dump({"accuracy": float((predicted == labels).mean())}, file)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="all", choices=["convergence", "straggler", "all"])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration (default 2)")
    parser.add_argument("--seconds", type=float, default=15.0, help="straggler: the wall-clock budget of a run")
    parser.add_argument("--sleep-ms", type=float, default=20.0, help="straggler: a fast rank's sleep per step")
    parser.add_argument("--record", action="store_true",
                        help="append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (runs, logs) and print it")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return straggler_rank(args)
    machine = harness.machine_info(1, "env")
    print(f"# {machine['cpu']}, {machine['cores']} cores, commit {machine['commit']}, load average "
          f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}", flush=True)
    scratch = tempfile.mkdtemp(prefix="bench_ps_async_")
    try:
        if args.part in ("convergence", "all"):
            convergence(args, scratch, machine)
        if args.part in ("straggler", "all"):
            straggler(args, scratch, machine)
    finally:
        if args.keep:
            print(f"# scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
