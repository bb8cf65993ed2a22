"""How much of the gradient allreduce distrain hides behind backward, on 2 ranks.

    python benchmarks/bench_overlap.py [--backend mpi|ps] [--ranks 2] [--repeats 20] [--record]

For the ~25M-parameter MLP (784-4096-4096-1024-10, batch 64 per rank, 100 MB of float32
gradients) each rank times, alternating in rounds:

  backward   forward + backward with no synchronisation (the model unwrapped)
  sync       the same buckets' allreduces alone: all started, then all waited for
  ddp        forward + backward under DistributedDataParallel (ends when every bucket is averaged)

If nothing overlapped, ddp = backward + sync; if everything did, ddp = backward. So

  hidden fraction = (backward + sync - ddp) / sync

is the share of the allreduce time that ran behind backward (clipped to 0..1). A second
figure starts the same allreduces and then leaves the CPU idle for as long as backward
took (as when backward runs on a GPU), and reports the share of the sync finished by the
time the idle spell ends. Run it per
backend: under MPI the reducer must drive MPICH's progress itself (NOTE [ MPI progress ] in
distrain/parallel.py); the parameter server's transfers run on ZeroMQ's I/O thread. On a
2-core machine the ranks' compute and the communication share the same two cores, so
little can hide there: read the figure against the machine.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SIZES, BATCH = (784, 4096, 4096, 1024, 10), 64


def worker(repeats, record):
    import numpy as np

    import distrain
    import distrain.distributed as dist
    import distrain.nn as nn
    from distrain.parallel import DistributedDataParallel

    comm = dist.init()
    rank, size = comm.rank, comm.size

    def build():
        distrain.manual_seed(0)
        layers = []
        for fan_in, fan_out in zip(SIZES, SIZES[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    rng = np.random.default_rng(rank)
    x = distrain.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = distrain.tensor(rng.integers(0, SIZES[-1], BATCH))
    plain, wrapped = build(), DistributedDataParallel(build())
    distrain.optim.SGD(plain.parameters(), lr=0.01)  # pack the plain model's parameters too, like the wrapped one
    buckets = wrapped._reducer.buckets

    def backward(model):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()

    def sync():
        handles = [comm.allreduce_async(b["flat"].grad[b["start"]:b["end"]], "mean") for b in buckets]
        for handle in handles:
            handle.wait()

    idle_seconds = [0.1]  # until the first timed backward

    def sync_behind_idle_cpu():
        """The time left to wait after the CPU idled for as long as backward takes."""
        handles = [comm.allreduce_async(b["flat"].grad[b["start"]:b["end"]], "mean") for b in buckets]
        time.sleep(idle_seconds[0])
        start = time.perf_counter()
        for handle in handles:
            handle.wait()
        return time.perf_counter() - start

    steps = {"backward": lambda: backward(plain), "sync": sync, "ddp": lambda: backward(wrapped),
             "idle": sync_behind_idle_cpu}
    times = {key: [] for key in steps}
    keys = list(steps)
    for round_number in range(repeats + 2):
        for key in keys[round_number % len(keys):] + keys[:round_number % len(keys)]:
            comm.barrier()
            start = time.perf_counter()
            left = steps[key]()
            elapsed = time.perf_counter() - start if left is None else left
            if round_number >= 2:
                times[key].append(elapsed * 1e3)
        if round_number == 2:  # idle as long as one backward takes
            idle_seconds[0] = times["backward"][0] / 1e3
    # every rank's medians, so the figure is the slowest rank's
    medians = comm.allgather(np.array([statistics.median(times[key]) for key in keys]))
    backward_ms, sync_ms, ddp_ms, idle_left_ms = medians.max(axis=0)
    hidden = min(max((backward_ms + sync_ms - ddp_ms) / sync_ms, 0.0), 1.0)
    hidden_idle = min(max((sync_ms - idle_left_ms) / sync_ms, 0.0), 1.0)
    if rank == 0:
        machine = harness.machine_info(1, "env")
        result = {"name": "overlap_mlp_25M", "backend": comm.name, "ranks": size, "batch_per_rank": BATCH,
                  "gradient_mb": sum(b["end"] - b["start"] for b in buckets) * 4 / 2 ** 20, "buckets": len(buckets),
                  "backward_ms": backward_ms, "sync_ms": sync_ms, "ddp_ms": ddp_ms, "hidden_fraction": hidden,
                  "idle_cpu_wait_left_ms": idle_left_ms, "hidden_fraction_idle_cpu": hidden_idle,
                  "mpi_progress": getattr(comm, "progress", None), "machine": machine}
        print(f"# {machine['cpu']}, {machine['cores']} cores, {size} ranks ({comm.name}), 1 BLAS thread per rank")
        print(f"backward {backward_ms:.1f} ms   sync alone {sync_ms:.1f} ms   DDP backward {ddp_ms:.1f} ms   "
              f"hidden {hidden:.0%} of the sync")
        print(f"behind {backward_ms:.0f} ms of idle CPU: {idle_left_ms:.1f} ms of the sync left, "
              f"hidden {hidden_idle:.0%}")
        harness.emit_result(result, RESULTS_DIR, record)
    dist.shutdown()


def main(argv=None):
    return harness.multi_rank_main(__file__, worker, argv, __doc__, repeats=20, timeout=1500, backends=("mpi", "ps"))


if __name__ == "__main__":
    sys.exit(main())
