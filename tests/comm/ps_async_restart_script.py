"""One rank of tests/comm/test_ps_async_restarts.py: asynchronous training through a server that may restart.

RANK, WORLD_SIZE and $DISTRAIN_PS_SECRET come from the test. The rank trains a small MLP with
SGD momentum, K = $ASYNC_K, on the server at $ASYNC_ADDRESS for $ASYNC_STEPS steps, and after
its S-th step prints "rank R step S clock C reconnected X": C, this rank's clock on the model's
one served shard (the server's count of its pushes), and X, 1 when the step had to connect to
the server again (NOTE [ A server that restarts ] in distrain/comm/ps/served_model.py). With
$ASYNC_PAUSE_AT it waits after that many steps until the file $ASYNC_GO_FILE exists.
"""
import os
import time

import numpy as np

import distrain
from distrain import nn
from distrain.comm.ps.client import PSCommunicator
from distrain.parallel import DistributedDataParallel

rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
comm = PSCommunicator(os.environ["ASYNC_ADDRESS"], rank, size, timeout=30)
distrain.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)), comm=comm,
                                ps_mode="async", staleness=float(os.environ["ASYNC_K"]))
optimizer = distrain.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
rng = np.random.default_rng(rank)
pause_at = int(os.environ.get("ASYNC_PAUSE_AT", "-1"))
for step in range(1, int(os.environ["ASYNC_STEPS"]) + 1):
    connection = comm.connections[0]
    inputs, targets = rng.standard_normal((4, 8)).astype(np.float32), rng.integers(0, 3, 4)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(distrain.tensor(inputs)), distrain.tensor(targets)).backward()
    optimizer.step()
    (clock,) = model._served.clocks.values()
    print(f"rank {rank} step {step} clock {clock} reconnected {int(comm.connections[0] is not connection)}",
          flush=True)
    if step == pause_at:
        while not os.path.exists(os.environ["ASYNC_GO_FILE"]):
            time.sleep(0.02)
comm.close()
