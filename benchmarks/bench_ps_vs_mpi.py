"""The synchronous data-parallel step of the ~25M-parameter MLP: parameter server beside MPI, in one run.

    python benchmarks/bench_ps_vs_mpi.py [--ranks 2] [--servers 1] [--repeats 20] [--record]

The driver starts the parameter server(s) (`python -m distrain.comm.ps.server`, one process
each, as the launcher does for `--backend ps`), then `mpiexec -n RANKS` on itself. Every
rank builds the 784-4096-4096-1024-10 MLP (the "25M" MLP of bench_ddp.py and bench_overlap.py:
24.2M parameters, 92 MiB of float32 gradients, batch 64 per rank) three times, each with SGD momentum:

  mpi     DistributedDataParallel on the MPI communicator (mpi4py, the mpich wheel)
  ps      DistributedDataParallel on a parameter-server communicator of the same ranks,
          synchronous mode: each 25 MB bucket pushed to the server(s) as backward fills it,
          summed there in rank order, pulled back
  single  the model alone, no synchronisation: what the step costs without communication

and times one step of each (zero_grad, forward, backward with the bucket reductions,
optimizer step), the order rotating round by round, an MPI barrier before each. A round's
time is the slowest rank's. ratio = ps / mpi (medians; below 1: the parameter server is
faster); the communication each adds is its step minus the single step. Both data-parallel
models start alike and average the same gradients, so their parameters must end equal
("same_parameters"). One BLAS thread per rank; on a 2-core machine the ranks and the server
share the cores, so compute and communication contend (read the figures against the machine).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SIZES, BATCH = (784, 4096, 4096, 1024, 10), 64
WARMUP_ROUNDS = 2


def worker(args):
    import numpy as np
    from mpi4py import MPI

    import distrain
    import distrain.distributed as dist
    import distrain.nn as nn
    from distrain.comm.ps.client import PSCommunicator
    from distrain.parallel import DistributedDataParallel

    mpi = dist.init("mpi")
    rank, size = mpi.rank, mpi.size
    ps = PSCommunicator(args.ps_addresses, rank, size)

    def build():
        distrain.manual_seed(0)
        layers = []
        for fan_in, fan_out in zip(SIZES, SIZES[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    rng = np.random.default_rng(rank)
    x = distrain.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = distrain.tensor(rng.integers(0, SIZES[-1], BATCH))
    models = {"mpi": DistributedDataParallel(build(), comm=mpi), "ps": DistributedDataParallel(build(), comm=ps),
              "single": build()}
    optimizers = {name: distrain.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) for name, model in models.items()}

    def step(name):
        optimizers[name].zero_grad()
        nn.functional.cross_entropy(models[name](x), y).backward()
        optimizers[name].step()

    keys = list(models)
    times = {key: [] for key in keys}
    for round_number in range(WARMUP_ROUNDS + args.repeats):
        for key in keys[round_number % len(keys):] + keys[:round_number % len(keys)]:
            MPI.COMM_WORLD.Barrier()
            start = time.perf_counter()
            step(key)
            if round_number >= WARMUP_ROUNDS:
                times[key].append(time.perf_counter() - start)
    rounds = {key: np.max(mpi.allgather(np.array(values)), axis=0) for key, values in times.items()}  # slowest rank
    same = all(np.array_equal(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(models["mpi"].parameters(), models["ps"].parameters()))
    same = bool(min(mpi.allgather(np.array([float(same)]))))
    if rank == 0:
        machine = harness.machine_info(1, "env")
        medians = {key: float(statistics.median(values)) * 1e3 for key, values in rounds.items()}
        result = {"name": f"ps_sync_step_mlp_25M_vs_mpi_{args.servers}server{'s' if args.servers > 1 else ''}",
                  "ranks": size, "servers": args.servers, "batch_per_rank": BATCH,
                  "parameters": sum(p.numel() for p in models["single"].parameters()),
                  "ps_ms": medians["ps"], "mpi_ms": medians["mpi"], "single_ms": medians["single"],
                  "ratio": medians["ps"] / medians["mpi"],
                  "ps_communication_ms": medians["ps"] - medians["single"],
                  "mpi_communication_ms": medians["mpi"] - medians["single"],
                  **{f"{key}_p10_ms": float(np.percentile(values, 10)) * 1e3 for key, values in rounds.items()},
                  **{f"{key}_p90_ms": float(np.percentile(values, 90)) * 1e3 for key, values in rounds.items()},
                  "rounds": args.repeats, "same_parameters": same, "load_average": args.load_before,
                  "target": None, "note": "synchronous DistributedDataParallel step (SGD momentum), ps / mpi",
                  "machine": machine}
        print(f"# {machine['cpu']}, {machine['cores']} cores, {size} ranks, {args.servers} server(s), 1 BLAS thread "
              f"per rank, medians over {args.repeats} rounds (p10-p90), load average before {args.load_before:.2f}")
        for key in keys:
            print(f"{key:<8}{medians[key]:9.1f} ms ({result[key + '_p10_ms']:.1f}-{result[key + '_p90_ms']:.1f})")
        print(f"ps / mpi {result['ratio']:.2f}   communication added: ps {result['ps_communication_ms']:.1f} ms, "
              f"mpi {result['mpi_communication_ms']:.1f} ms   same parameters: {same}")
        harness.emit_result(result, RESULTS_DIR, args.record)
    ps.close()
    dist.shutdown()
    return 0


def start_servers(count, ranks):
    """`count` parameter-server processes for `ranks` ranks; (processes, addresses)."""
    processes, addresses = [], []
    for _ in range(count):
        process = subprocess.Popen([sys.executable, "-m", "distrain.comm.ps.server", "--world-size", str(ranks),
                                    "--bind", "tcp://127.0.0.1:0", "--quiet"], stdout=subprocess.PIPE, text=True)
        processes.append(process)
        addresses.append(process.stdout.readline().strip())
    return processes, addresses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ps-addresses", help=argparse.SUPPRESS)
    parser.add_argument("--load-before", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    os.environ.setdefault("DISTRAIN_PS_SECRET", os.urandom(16).hex())  # the servers and the ranks inherit it
    servers, addresses = start_servers(args.servers, args.ranks)
    try:
        arguments = ["--servers", str(args.servers), "--repeats", str(args.repeats), "--ps-addresses",
                     ",".join(addresses), "--load-before", str(os.getloadavg()[0])]
        arguments += ["--record"] if args.record else []
        code = harness.run_under_mpiexec(__file__, args.ranks, arguments, timeout=1500)
    finally:
        for server in servers:
            try:
                server.wait(timeout=30)  # a server ends once every rank has said bye
            except subprocess.TimeoutExpired:
                server.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
