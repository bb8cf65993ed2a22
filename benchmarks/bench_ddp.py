"""A data-parallel training step: distrain's DistributedDataParallel beside PyTorch DDP (gloo), 2 ranks.

    python benchmarks/bench_ddp.py [--ranks 2] [--repeats 20] [--record]

It starts `mpiexec -n RANKS` on itself. Models: the 784-1024-1024-10 MLP (batch 256 per
rank) and a ~25M-parameter MLP (784-4096-4096-1024-10, batch 64 per rank), each trained
with SGD momentum. Per framework it times the data-parallel step and the same step in one
process without synchronisation, so the cost of synchronisation is visible:
overhead = (data-parallel step - single step). Rounds alternate between the frameworks.
Target: distrain's data-parallel step <= 1.0x PyTorch DDP's. One BLAS thread per rank.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MODELS = {"mlp_784_1024": ((784, 1024, 1024, 10), 256), "mlp_25M": ((784, 4096, 4096, 1024, 10), 64)}


def build(lib, sizes):
    layers = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [lib.nn.Linear(fan_in, fan_out), lib.nn.ReLU()]
    return lib.nn.Sequential(*layers[:-1])


def worker(repeats, record):
    import numpy as np
    import torch
    import torch.distributed as torch_dist
    from mpi4py import MPI

    import distrain
    import distrain.distributed as dist
    from distrain.parallel import DistributedDataParallel

    comm = dist.init()
    rank, size = comm.rank, comm.size
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29534", rank=rank, world_size=size)
    world = MPI.COMM_WORLD
    results = []
    for name, (sizes, batch) in MODELS.items():
        rng = np.random.default_rng(rank)
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], batch)
        steps = {}
        for label, lib in (("distrain", distrain), ("torch", torch)):
            for parallel in (True, False):
                torch.manual_seed(0)
                distrain.manual_seed(0)
                model = build(lib, sizes)
                if parallel:
                    model = DistributedDataParallel(model) if lib is distrain else \
                        torch.nn.parallel.DistributedDataParallel(model)
                optimizer = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                inputs, targets = lib.tensor(x.copy()), lib.tensor(y.copy())

                def step(model=model, optimizer=optimizer, inputs=inputs, targets=targets, lib=lib):
                    optimizer.zero_grad()
                    lib.nn.functional.cross_entropy(model(inputs), targets).backward()
                    optimizer.step()

                steps[(label, parallel)] = step
        times = {key: [] for key in steps}
        keys = list(steps)
        for round_number in range(repeats + 2):
            order = keys[round_number % len(keys):] + keys[:round_number % len(keys)]
            for key in order:
                world.Barrier()
                start = time.perf_counter()
                steps[key]()
                elapsed = time.perf_counter() - start
                world.Barrier()
                if round_number >= 2:
                    times[key].append(elapsed)
        medians = {key: statistics.median(values) * 1e3 for key, values in times.items()}
        results.append({
            "name": f"ddp_step_{name}", "ranks": size, "batch_per_rank": batch,
            "distrain_ddp_ms": medians[("distrain", True)], "distrain_single_ms": medians[("distrain", False)],
            "torch_ddp_ms": medians[("torch", True)], "torch_single_ms": medians[("torch", False)],
            "ratio": medians[("distrain", True)] / medians[("torch", True)], "target": "<= 1.0"})
    if rank == 0:
        machine = harness.machine_info(1, "env")
        print(f"# {machine['cpu']}, {machine['cores']} cores, {size} ranks, 1 BLAS thread per rank")
        for result in results:
            result["machine"] = machine
            print(f"{result['name']:22s} distrain DDP {result['distrain_ddp_ms']:8.2f} ms (single "
                  f"{result['distrain_single_ms']:.2f})   torch DDP {result['torch_ddp_ms']:8.2f} ms (single "
                  f"{result['torch_single_ms']:.2f})   ratio {result['ratio']:.3f}")
            harness.emit_result(result, RESULTS_DIR, record)
    torch_dist.destroy_process_group()
    dist.shutdown()


def main(argv=None):
    return harness.multi_rank_main(__file__, worker, argv, __doc__, repeats=20, timeout=1500)


if __name__ == "__main__":
    sys.exit(main())
