"""The Horovod-API training step (hvd.DistributedOptimizer) beside the DDP step, same model, same run, 2 ranks.

    python benchmarks/bench_horovod.py [--ranks 2] [--repeats 300] [--record] [--backend mpi|ps]

Both are distrain's one GradientReducer (DESIGN.md: one mechanism); the Horovod face adds
its join announcement (one small non-blocking allreduce per step, NOTE [ join ] in
gradient_reducer.py) and the optimizer wrapper. Model: the 784-1024-1024-10 MLP, batch 64
per rank, SGD with momentum, one BLAS thread per rank. Rounds alternate which step runs
first; the ratio is the median of per-round ratios (Horovod step / DDP step), so a burst
of load from elsewhere on the machine hits both sides of a pair. Target: within 5%.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SIZES, BATCH = (784, 1024, 1024, 10), 64


def build(distrain):
    distrain.manual_seed(0)
    layers = []
    for fan_in, fan_out in zip(SIZES, SIZES[1:]):
        layers += [distrain.nn.Linear(fan_in, fan_out), distrain.nn.ReLU()]
    return distrain.nn.Sequential(*layers[:-1])


def worker(repeats, record):
    import numpy as np

    import distrain
    import distrain.horovod as hvd
    from distrain.parallel import DistributedDataParallel

    hvd.init()
    comm = distrain.distributed.get_communicator()
    rng = np.random.default_rng(hvd.rank())
    inputs = distrain.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    targets = distrain.tensor(rng.integers(0, SIZES[-1], BATCH))

    ddp_model = DistributedDataParallel(build(distrain))
    ddp_optimizer = distrain.optim.SGD(ddp_model.parameters(), lr=0.01, momentum=0.9)
    hvd_model = build(distrain)
    hvd.broadcast_parameters(hvd_model.state_dict(), root_rank=0)
    hvd_optimizer = hvd.DistributedOptimizer(distrain.optim.SGD(hvd_model.parameters(), lr=0.01, momentum=0.9),
                                             named_parameters=hvd_model.named_parameters())

    def step(model, optimizer):
        optimizer.zero_grad()
        distrain.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()

    steps = {"horovod": lambda: step(hvd_model, hvd_optimizer), "ddp": lambda: step(ddp_model, ddp_optimizer)}
    times = {key: [] for key in steps}
    for round_number in range(repeats + 10):
        order = ["horovod", "ddp"] if round_number % 2 else ["ddp", "horovod"]
        for key in order:
            comm.barrier()
            started = time.perf_counter()
            steps[key]()
            elapsed = time.perf_counter() - started
            if round_number >= 10:  # warm-up rounds
                times[key].append(elapsed)
    ratios = [h / d for h, d in zip(times["horovod"], times["ddp"])]
    result = {"name": "horovod_step_vs_ddp_mlp_784_1024", "backend": comm.name, "ranks": hvd.size(),
              "batch_per_rank": BATCH, "steps": repeats,
              "horovod_ms": statistics.median(times["horovod"]) * 1e3, "ddp_ms": statistics.median(times["ddp"]) * 1e3,
              "ratio": statistics.median(ratios), "target": "<= 1.05",
              "load_average_1min_before": os.getloadavg()[0]}
    if hvd.rank() == 0:
        result["machine"] = harness.machine_info(1, "env")
        print(f"# {result['machine']['cpu']}, {result['machine']['cores']} cores, {hvd.size()} ranks ({comm.name}), "
              f"1 BLAS thread per rank, load average {os.getloadavg()[0]:.2f}")
        print(f"horovod step {result['horovod_ms']:.2f} ms   ddp step {result['ddp_ms']:.2f} ms   "
              f"ratio (median of pairs) {result['ratio']:.3f}")
        harness.emit_result(result, RESULTS_DIR, record)
    hvd.shutdown()


def main(argv=None):
    return harness.multi_rank_main(__file__, worker, argv, __doc__, repeats=300, timeout=900, backends=("mpi", "ps"))


if __name__ == "__main__":
    sys.exit(main())
