"""Run under `mpiexec -n N`: DistributedDataParallel gives every rank rank 0's buffers (BatchNorm statistics).

Every rank starts with its own, different running statistics. Construction must replace them with
rank 0's. With broadcast_buffers=True each training forward starts from rank 0's buffers again, so after
step k rank r holds update(rank 0's statistics after step k-1, rank r's batch k); with broadcast_buffers=False
each rank follows its own batches from rank 0's starting point. The expected values are computed in closed
form with NumPy (PyTorch's rule: running = (1 - momentum) * running + momentum * batch statistic, the
variance unbiased), independently of the engine's BatchNorm. Prints "rank R ok".
"""
import numpy as np

import distrain
import distrain.distributed as dist
import distrain.nn as nn
from distrain.parallel import DistributedDataParallel

comm = dist.init(timeout=30)
rank, size = comm.rank, comm.size
FEATURES, BATCH, STEPS, MOMENTUM = 4, 5, 3, 0.1


def starting_statistics(r):
    """(running_mean, running_var, num_batches_tracked) of rank r before DDP: different on every rank."""
    return np.arange(FEATURES) * (r + 1.0) - r, 1.0 + r + np.arange(FEATURES), 7 * r


def batch(r, step):
    return np.random.default_rng(100 * step + r).standard_normal((BATCH, FEATURES)) * (r + 1) + step


def update(statistics, x):
    mean, var, count = statistics
    return ((1 - MOMENTUM) * mean + MOMENTUM * x.mean(axis=0),
            (1 - MOMENTUM) * var + MOMENTUM * x.var(axis=0, ddof=1), count + 1)


def check(layer, expected, when):
    mean, var, count = expected
    for name, want in (("running_mean", mean), ("running_var", var)):
        np.testing.assert_allclose(getattr(layer, name).numpy(), want, rtol=1e-10, atol=1e-12,
                                   err_msg=f"rank {rank} of {size}: {name} {when}")
    assert int(layer.num_batches_tracked.item()) == count, (rank, when, layer.num_batches_tracked.item(), count)


for broadcast_buffers in (True, False):
    layer = nn.BatchNorm1d(FEATURES, momentum=MOMENTUM).double()
    mean, var, count = starting_statistics(rank)
    layer.load_state_dict({"running_mean": distrain.tensor(mean), "running_var": distrain.tensor(var),
                           "num_batches_tracked": distrain.tensor(np.array(count, dtype=np.int64))}, strict=False)
    model = DistributedDataParallel(layer, broadcast_buffers=broadcast_buffers)
    roots = starting_statistics(0)  # rank 0's chain of statistics
    mine = roots  # this rank's own chain (broadcast_buffers=False)
    check(layer, roots, f"after construction (broadcast_buffers={broadcast_buffers})")
    for step in range(STEPS):
        model(distrain.tensor(batch(rank, step))).sum().backward()
        if broadcast_buffers:
            expected = update(roots, batch(rank, step))
            roots = update(roots, batch(0, step))
        else:
            expected = mine = update(mine, batch(rank, step))
        check(layer, expected, f"after forward {step + 1} (broadcast_buffers={broadcast_buffers})")

dist.shutdown()
print(f"rank {rank} ok", flush=True)
