"""What the safety nets cost a data-parallel step: liveness heartbeats and the DDP sequence check, on and off.

    python benchmarks/bench_safety.py [--ranks 2] [--repeats 200] [--record]

It starts `mpiexec -n RANKS` on itself (MPI only: the ps backend's server admits one
communicator per rank, and the two variants need two). The model is the 784-1024-1024-10 MLP (batch 256 per
rank, SGD momentum, one BLAS thread per rank) under DistributedDataParallel, built twice:
"on" over a communicator with its liveness side channel (comm/liveness.py) and the
sequence check (parallel.py, NOTE [ sequence check ]), as every job runs by default; "off"
over a communicator without liveness and with the sequence check taken out. Steps of the
two alternate, each between barriers, so both see the same machine. Target: on/off <= 1.01.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SIZES, BATCH = (784, 1024, 1024, 10), 256


def worker(repeats, record):
    import numpy as np

    import distrain
    from distrain.comm import create_communicator
    from distrain.distributed import choose_backend
    from distrain.parallel import DistributedDataParallel

    backend = choose_backend()
    communicators = {"on": create_communicator(backend), "off": create_communicator(backend, liveness=False)}
    rank, size = communicators["on"].rank, communicators["on"].size
    rng = np.random.default_rng(rank)
    x = distrain.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = distrain.tensor(rng.integers(0, SIZES[-1], BATCH))
    steps = {}
    for label, comm in communicators.items():
        distrain.manual_seed(0)
        layers = []
        for fan_in, fan_out in zip(SIZES, SIZES[1:]):
            layers += [distrain.nn.Linear(fan_in, fan_out), distrain.nn.ReLU()]
        model = DistributedDataParallel(distrain.nn.Sequential(*layers[:-1]), comm=comm)
        if label == "off":  # the sequence check taken out of this model's reducer only
            reducer = model._reducer
            reducer._start_sequence_check = lambda position: None
            reducer._finish_sequence_check = lambda sequence: None
        optimizer = distrain.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad()
            distrain.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        steps[label] = step
    times = {label: [] for label in steps}
    labels = list(steps)
    for round_number in range(repeats + 5):
        for label in labels[round_number % 2:] + labels[:round_number % 2]:
            communicators["off"].barrier()
            start = time.perf_counter()
            steps[label]()
            elapsed = time.perf_counter() - start
            if round_number >= 5:
                times[label].append(elapsed)
    medians = {label: statistics.median(values) * 1e3 for label, values in times.items()}
    means = {label: statistics.fmean(values) * 1e3 for label, values in times.items()}
    result = {"name": "ddp_step_safety_mlp_784_1024", "backend": backend, "ranks": size, "batch_per_rank": BATCH, "steps": repeats,
              "on_ms": medians["on"], "off_ms": medians["off"], "on_mean_ms": means["on"],
              "off_mean_ms": means["off"], "ratio": medians["on"] / medians["off"], "target": "<= 1.01"}
    if rank == 0:
        machine = harness.machine_info(1, "env")
        result["machine"] = machine
        print(f"# {machine['cpu']}, {machine['cores']} cores, {size} ranks over {backend}, 1 BLAS thread per rank")
        print(f"{result['name']}: liveness + sequence check {result['on_ms']:.3f} ms, without {result['off_ms']:.3f} ms "
              f"(medians of {repeats}; means {result['on_mean_ms']:.3f} / {result['off_mean_ms']:.3f})   "
              f"ratio {result['ratio']:.4f}")
        harness.emit_result(result, RESULTS_DIR, record)
    for comm in communicators.values():
        if comm.liveness is not None:
            from distrain.comm import liveness

            liveness.detach(comm.liveness)
        comm.close()


def main(argv=None):
    return harness.multi_rank_main(__file__, worker, argv, __doc__, repeats=200, timeout=900)


if __name__ == "__main__":
    sys.exit(main())
