"""What the compiled kernels cost at start-up: import time, and the first training step's compile or cache load.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_kernels_startup.py            # 3 fresh processes per case
    python benchmarks/bench_kernels_startup.py --record   # also append to benchmarks/results/

Every measurement is a fresh Python process (what a user's job pays once):
  import_distrain          `import distrain` (numba is not imported there: the kernels load lazily)
  import_torch             `import torch`, for comparison
  first_step_<path>_<cache>  import, build the small CNN of bench_nn_cpu.py, one training step:
                           path numpy (DISTRAIN_KERNELS=numpy) or numba; cache cold (an empty
                           NUMBA_CACHE_DIR: every kernel compiles) or warm (the kernels load from
                           the cache the cold run wrote)
  second_step_*            the next step in the same process: the steady state, for scale
The median of `--repeats` processes is reported.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BENCHMARKS = os.path.dirname(os.path.abspath(__file__))

IMPORT_PROGRAM = "import time; start = time.perf_counter(); import {module}; print(time.perf_counter() - start)"
STEP_PROGRAM = f"""
import sys, time
sys.path.insert(0, {BENCHMARKS!r})
start = time.perf_counter()
import distrain
import bench_nn_cpu
model = bench_nn_cpu.cnn(distrain)
optimizer = bench_nn_cpu.sgd_momentum(distrain, model)
x, y = bench_nn_cpu.cnn_batch()
step = bench_nn_cpu.training_step(distrain, model, optimizer, distrain.tensor(x), distrain.tensor(y))
step()
first = time.perf_counter() - start
start = time.perf_counter()
step()
print(first, time.perf_counter() - start)
"""


def run(program, env):
    output = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300,
                            check=True).stdout
    return [float(value) for value in output.split()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    base = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    results = {}
    for module in ("distrain", "torch"):
        results[f"import_{module}"] = [run(IMPORT_PROGRAM.format(module=module), base)[0]
                                       for _ in range(args.repeats)]
    for path in ("numpy", "numba"):
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(base, DISTRAIN_KERNELS=path, NUMBA_CACHE_DIR=cache)
                cold.append(run(STEP_PROGRAM, env))
                warm.append(run(STEP_PROGRAM, env))
        results[f"first_step_{path}_cold"] = [first for first, _ in cold]
        results[f"first_step_{path}_warm"] = [first for first, _ in warm]
        results[f"second_step_{path}"] = [second for _, second in warm]
    machine = harness.machine_info(1, "env")
    print(f"# {machine['cpu']}, {machine['cores']} cores; median of {args.repeats} fresh processes")
    for name, values in results.items():
        print(f"{name:28s} {statistics.median(values) * 1e3:9.1f} ms")
    record = {"name": "kernels_startup", **{f"{name}_ms": round(statistics.median(values) * 1e3, 1)
                                              for name, values in results.items()}, "machine": machine}
    harness.emit_result(record, RESULTS_DIR, args.record)


if __name__ == "__main__":
    main()
