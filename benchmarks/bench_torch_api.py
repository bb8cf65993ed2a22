"""What torch.distributed's API costs over the communicator it runs on: all_reduce of a Tensor through
`distrain.distributed.all_reduce` against the communicator's own in-place array allreduce, 1 MB and 100 MB.

    python benchmarks/bench_torch_api.py [--backend mpi|ps] [--ranks 2] [--repeats 40] [--record]

The ranks (mpiexec, or distrain's launcher for ps) alternate the two forms call by call, each
between barriers, so both see the same machine; medians per size. Target: ratio <= 1.05.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SIZES_MB = (1, 100)


def worker(repeats, record):
    import numpy as np

    import distrain
    import distrain.distributed as dist

    comm = dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    for megabytes in SIZES_MB:
        count = megabytes * 2 ** 20 // 4
        tensor = distrain.ones(count)
        array = np.ones(count, dtype=np.float32)
        forms = {"torch_api": lambda: dist.all_reduce(tensor), "communicator": lambda: comm.allreduce(array)}
        times = {name: [] for name in forms}
        rounds = repeats if megabytes < 100 else max(repeats // 4, 6)
        for round_number in range(rounds + 3):
            order = list(forms) if round_number % 2 else list(forms)[::-1]
            for name in order:
                comm.barrier()
                start = time.perf_counter()
                forms[name]()
                if round_number >= 3:
                    times[name].append(time.perf_counter() - start)
        expected = float(size ** (rounds + 3))  # every allreduce sums the ranks' equal values
        assert tensor[0].item() == expected and array[0] == expected, (tensor[0].item(), array[0], expected)
        medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
        result = {"name": f"torch_api_all_reduce_{megabytes}mb", "backend": comm.name, "ranks": size,
                  "distrain_ms": round(medians["torch_api"], 4), "peer_ms": round(medians["communicator"], 4),
                  "ratio": round(medians["torch_api"] / medians["communicator"], 4), "target": 1.05,
                  "peer": f"the {comm.name} communicator's own allreduce of a NumPy array", "calls": rounds,
                  "note": "distrain.distributed.all_reduce(Tensor) vs communicator.allreduce(ndarray), float32, "
                          "alternating call by call between barriers; medians"}
        result["pass"] = result["ratio"] <= result["target"]
        if rank == 0:
            result["machine"] = harness.machine_info(1, "env")
            print(f"{result['name']} over {comm.name}: torch API {medians['torch_api']:.3f} ms, communicator "
                  f"{medians['communicator']:.3f} ms   ratio {result['ratio']:.4f}")
            harness.emit_result(result, RESULTS_DIR, record)
    dist.destroy_process_group()


def main(argv=None):
    return harness.multi_rank_main(__file__, worker, argv, __doc__, repeats=40, timeout=900, backends=("mpi", "ps"))


if __name__ == "__main__":
    sys.exit(main())
