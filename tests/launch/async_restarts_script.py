"""A rank of tests/launch/test_async_restarts.py, started by `python -m distrain.launch -n N --backend ps --ps-mode
async`: `async_restarts_script.py STEPS MARK_DIR [--crash-rank R] [--pause-at S GO_FILE]`.

It trains a small MLP with DistributedDataParallel for STEPS steps and after its S-th prints
"rank R life L step S clocks C... reconnected X": L, which process of this rank it is (1 the
first, 2 the first restart: counted in files it leaves in MARK_DIR); C, its clock on each served
shard, in order (the servers' count of its pushes); X, 1 when the step had to connect to a
restarted server again. --crash-rank R: rank R's first process ends with code 7 at its third
step. --pause-at S GO_FILE: after S steps, wait until GO_FILE exists.
"""
import argparse
import os
import time

import numpy as np

import distrain
import distrain.distributed as dist
from distrain import nn
from distrain.parallel import DistributedDataParallel

parser = argparse.ArgumentParser()
parser.add_argument("steps", type=int)
parser.add_argument("mark_dir")
parser.add_argument("--crash-rank", type=int)
parser.add_argument("--pause-at", nargs=2)
args = parser.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
life = 1 + sum(name.startswith(f"rank-{rank}-") for name in os.listdir(args.mark_dir))
open(os.path.join(args.mark_dir, f"rank-{rank}-{life}"), "w").close()
distrain.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)))
optimizer = distrain.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
rng = np.random.default_rng(rank)
comm = model._served.comm
for step in range(1, args.steps + 1):
    if rank == args.crash_rank and life == 1 and step == 3:
        os._exit(7)
    connections = list(comm.connections)
    inputs, targets = rng.standard_normal((4, 8)).astype(np.float32), rng.integers(0, 3, 4)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(distrain.tensor(inputs)), distrain.tensor(targets)).backward()
    optimizer.step()
    clocks = " ".join(str(clock) for _, clock in sorted(model._served.clocks.items()))
    reconnected = int(any(new is not old for new, old in zip(comm.connections, connections)))
    print(f"rank {rank} life {life} step {step} clocks {clocks} reconnected {reconnected}", flush=True)
    if args.pause_at and step == int(args.pause_at[0]):
        while not os.path.exists(args.pause_at[1]):
            time.sleep(0.02)
dist.destroy_process_group()
