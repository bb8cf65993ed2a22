"""Run under `python -m distrain.launch -n N [--backend ps] tests/timeline_ddp_script.py STEPS [shutdown]` with
$DISTRAIN_TIMELINE set: a few DDP steps of a tiny MLP with several gradient buckets, nothing else.

The script never touches distrain.timeline itself: dist.init() starts the timeline from the
environment, and dist.shutdown() (with "shutdown") or the end of the process finishes it.
Each rank prints `rank R buckets [bytes, ...]` (its reducer's bucket sizes, from the
flat buffer's slices, for the test to compare with the trace) and `rank R ok`.
"""
import json
import sys

import numpy as np

import distrain
import distrain.distributed as dist
from distrain import nn
from distrain.parallel import DistributedDataParallel

steps = int(sys.argv[1])
comm = dist.init(timeout=30)
distrain.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)),
                                bucket_cap_mb=0.0003)  # 2 buckets
optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)
rng = np.random.default_rng(comm.rank)
for _ in range(steps):
    optimizer.zero_grad()
    x = distrain.tensor(rng.standard_normal((4, 5)).astype("float32"))
    nn.functional.cross_entropy(model(x), distrain.tensor(rng.integers(0, 3, 4))).backward()
    optimizer.step()
sizes = [(bucket["end"] - bucket["start"]) * bucket["flat"].grad.itemsize for bucket in model._buckets]
print(f"rank {comm.rank} buckets {json.dumps(sizes)}", flush=True)
print(f"rank {comm.rank} ok", flush=True)
if sys.argv[2:] == ["shutdown"]:
    dist.shutdown()
