"""One rank of tests/comm/test_ps_async.py: asynchronous parameter-server training in a real process.

RANK, WORLD_SIZE and $DISTRAIN_PS_SECRET come from the test; $ASYNC_JOB says what to do:

- "runs": $ASYNC_RUNS lists trainings, ";" between them, each "mode|K|optimizer|servers" (the
  servers "," between them, server 0 first). For each, the rank trains a float32 MLP of
  odd-sized layers for 4 steps on its own data through DistributedDataParallel, with SGD
  momentum or Adam under a StepLR schedule, in partitions (shards) of 2048 bytes, so that the
  model is split into many shards, spread over every server. It prints the SHA-256 of its
  parameters and its staleness histogram per training.
- "steps": one asynchronous training (K = $ASYNC_K) on the server at $ASYNC_ADDRESS, printing
  "rank R step S DIGEST" after its S-th step (S counts this process's steps; DIGEST: of the
  parameters the servers answered with). It
  stops after $ASYNC_STEPS steps, or once the file $ASYNC_STOP_FILE exists; with
  $ASYNC_DIE_AT it ends its process at that step without a word (os._exit), and with
  $ASYNC_WRITE_STOP_FILE it creates that file when it has done its steps.
"""
import hashlib
import os
import time

import numpy as np

import distrain
from distrain import nn
from distrain.comm.ps.client import PSCommunicator
from distrain.parallel import DistributedDataParallel

rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def digest(module):
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in module.parameters())).hexdigest()[:24]


def batch(step):
    rng = np.random.default_rng((rank, step))  # every rank its own data: the sums are of different numbers
    inputs = rng.standard_normal((8, 37)).astype(np.float32) * 10.0 ** rng.uniform(-2, 2, (8, 1)).astype(np.float32)
    return distrain.tensor(inputs), distrain.tensor(rng.integers(0, 5, 8))


def model_and_optimizer(comm, mode, staleness, optimizer_name):
    distrain.manual_seed(rank)  # every rank its own initial parameters: both modes must start all from rank 0's
    local = nn.Sequential(nn.Linear(37, 61), nn.Tanh(), nn.Linear(61, 5))
    model = DistributedDataParallel(local, comm=comm, ps_mode=mode, staleness=staleness)
    if optimizer_name == "sgd":
        optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        optimizer = distrain.optim.Adam(model.parameters(), lr=0.01)
    return local, model, optimizer


def train(model, optimizer, step):
    inputs, targets = batch(step)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()


def runs():
    for run in os.environ["ASYNC_RUNS"].split(";"):
        mode, staleness, optimizer_name, servers = run.split("|")
        comm = PSCommunicator(servers, rank, size, timeout=30, partition_mb=2048 / 2 ** 20)
        local, model, optimizer = model_and_optimizer(comm, mode, None if mode == "sync" else staleness,
                                                      optimizer_name)
        schedule = distrain.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        for step in range(4):
            train(model, optimizer, step)
            schedule.step()
        shards = sum(len(plan) for plan in model._served.shards) if model._served is not None else 0
        print(f"rank {rank} run {mode}|{staleness}|{optimizer_name}|{len(comm.connections)} shards {shards} "
              f"digest {digest(local)} staleness {model.staleness_histogram}", flush=True)
        comm.close()


def steps():
    comm = PSCommunicator(os.environ["ASYNC_ADDRESS"], rank, size, timeout=30)
    local, model, optimizer = model_and_optimizer(comm, "async", os.environ["ASYNC_K"], "sgd")
    die_at = int(os.environ.get("ASYNC_DIE_AT", "-1"))
    stop_file = os.environ.get("ASYNC_STOP_FILE")
    for step in range(int(os.environ["ASYNC_STEPS"])):
        if step == die_at:
            os._exit(3)
        train(model, optimizer, step)
        print(f"rank {rank} step {step + 1} {digest(local)}", flush=True)
        if stop_file and os.path.exists(stop_file):
            break
        time.sleep(float(os.environ.get("ASYNC_SLEEP", "0.02")))
    if os.environ.get("ASYNC_WRITE_STOP_FILE"):
        open(os.environ["ASYNC_WRITE_STOP_FILE"], "w").close()
    print(f"rank {rank} done after {step + 1} steps", flush=True)
    comm.close()


{"runs": runs, "steps": steps}[os.environ["ASYNC_JOB"]]()
