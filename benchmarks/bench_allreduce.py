"""Gradient synchronisation alone: 25M float32 gradients (100 MB), 2 ranks, three ways side by side.

    python benchmarks/bench_allreduce.py [--ranks 2] [--repeats 15] [--record]

It starts `mpiexec -n RANKS` on itself (the `mpi` extra's MPICH). Every rank then times,
alternating round by round, the synchronisation of one 100 MB gradient buffer:

  distrain   the reducer's way: the flat gradient buffer allreduced ("mean") in place as
             25 MB buckets (DistributedDataParallel's default bucket_cap_mb), all in flight
             at once, then waited for                         target: <= 1.1x the ceiling
  ceiling    one raw mpi4py Allreduce of the whole buffer (plus the division by the world size)
  torch      torch.distributed.all_reduce of the same buffer over gloo (what PyTorch DDP on CPU
             uses), divided by the world size                 target: distrain faster

No backward runs here: this is the communication cost that overlap has to hide.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ELEMENTS = 25 * 2 ** 20  # float32: 100 MiB
BUCKET_ELEMENTS = 25 * 2 ** 20 // 4  # 25 MiB


def worker(repeats, record):
    import numpy as np
    import torch
    import torch.distributed as torch_dist
    from mpi4py import MPI

    import distrain.distributed as dist

    comm = dist.init()
    rank, size = comm.rank, comm.size
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29533", rank=rank, world_size=size)
    grads = np.ones(ELEMENTS, np.float32) * (rank + 1)
    torch_grads = torch.ones(ELEMENTS) * (rank + 1)
    world = MPI.COMM_WORLD

    def distrain_sync():
        handles = [comm.allreduce_async(grads[start:start + BUCKET_ELEMENTS], "mean")
                   for start in range(0, ELEMENTS, BUCKET_ELEMENTS)]
        for handle in handles:
            handle.wait()

    def ceiling():
        world.Allreduce(MPI.IN_PLACE, grads)
        np.divide(grads, size, out=grads)

    def torch_sync():
        torch_dist.all_reduce(torch_grads)
        torch_grads.div_(size)

    contenders = {"distrain": distrain_sync, "ceiling": ceiling, "torch_gloo": torch_sync}
    times = {name: [] for name in contenders}
    for round_number in range(repeats + 2):
        names = list(contenders)
        names = names[round_number % 3:] + names[:round_number % 3]
        for name in names:
            world.Barrier()
            start = time.perf_counter()
            contenders[name]()
            world.Barrier()
            if round_number >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - start)
    assert np.allclose(grads[:10], grads[0])  # every path kept the values consistent
    if rank == 0:
        medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
        machine = harness.machine_info(1, "env")
        result = {"name": "gradient_sync_100MB", "ranks": size, "distrain_ms": medians["distrain"],
                  "ceiling_ms": medians["ceiling"], "torch_gloo_ms": medians["torch_gloo"],
                  "distrain_over_ceiling": medians["distrain"] / medians["ceiling"],
                  "distrain_over_torch_gloo": medians["distrain"] / medians["torch_gloo"],
                  "targets": "distrain_over_ceiling <= 1.1 and distrain_over_torch_gloo < 1", "machine": machine}
        print(f"# {machine['cpu']}, {machine['cores']} cores, {size} ranks, 100 MiB float32 gradients")
        for name, value in medians.items():
            print(f"{name:12s} {value:8.2f} ms")
        print(f"distrain / ceiling {result['distrain_over_ceiling']:.3f}   distrain / torch gloo "
              f"{result['distrain_over_torch_gloo']:.3f}")
        harness.emit_result(result, RESULTS_DIR, record)
    torch_dist.destroy_process_group()
    dist.shutdown()


def main(argv=None):
    return harness.multi_rank_main(__file__, worker, argv, __doc__, repeats=15, timeout=900)


if __name__ == "__main__":
    sys.exit(main())
