"""One rank of tests/comm/test_ps_servers.py: DistributedDataParallel training on 1, 2 and 3 parameter servers.

$PS_SERVER_SETS lists the server sets, ";" between sets and "," between the servers of one
set (server 0 first); RANK, WORLD_SIZE and $DISTRAIN_PS_SECRET come from the test. For each
set, the rank trains a float32 MLP of odd-sized layers for 3 SGD-momentum steps on its own
data, through DDP with small buckets split into partitions of 512 bytes (so every bucket
lands on every server), and keeps the parameters' bytes. It prints the SHA-256 of each set's
parameters: the test checks that they are the same for every set and every rank.
"""
import hashlib
import os

import numpy as np

import distrain
from distrain import nn
from distrain.comm.ps.client import PSCommunicator
from distrain.parallel import DistributedDataParallel

rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
rng = np.random.default_rng(rank)  # every rank its own data: the sums are of different numbers
batches = [(rng.standard_normal((8, 37)).astype(np.float32) * 10.0 ** rng.uniform(-3, 3, (8, 1)).astype(np.float32),
            rng.integers(0, 5, 8)) for _ in range(3)]
digests = []
for servers in os.environ["PS_SERVER_SETS"].split(";"):
    comm = PSCommunicator(servers, rank, size, timeout=30, partition_mb=512 / 2 ** 20)
    distrain.manual_seed(0)
    local = nn.Sequential(nn.Linear(37, 61), nn.Tanh(), nn.Linear(61, 5))
    model = DistributedDataParallel(local, comm=comm, bucket_cap_mb=0.004)
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(distrain.tensor(x)), distrain.tensor(y)).backward()
        optimizer.step()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in local.parameters()))
    digests.append(digest.hexdigest())
    print(f"rank {rank} servers {len(comm.connections)} partitions {sum(comm.partition_collectives)} "
          f"digest {digests[-1]}", flush=True)
    comm.close()
