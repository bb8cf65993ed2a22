"""Run under `mpiexec -n N`: N ranks with batch B each must train exactly like 1 process with batch N*B.

Checks, after 4 SGD-momentum steps of a small MLP (with an unused parameter and a
BatchNorm buffer), that every rank's parameters equal a single-process run on the whole
batch (computed on every rank from the same seed). Prints "rank R ok".
"""
import numpy as np

import distrain
import distrain.distributed as dist
import distrain.nn as nn
from distrain.parallel import DistributedDataParallel

comm = dist.init(timeout=30)
rank, size = comm.rank, comm.size
BATCH = 6


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
        self.unused = nn.Linear(3, 3)  # never called: its gradients must come out zero, not hang

    def forward(self, x):
        return self.body(x)


def build():
    distrain.manual_seed(0)
    return Net()


rng = np.random.default_rng(0)
steps = [(rng.standard_normal((BATCH * size, 5)).astype(np.float64), rng.integers(0, 3, BATCH * size))
         for _ in range(4)]

reference = build().double()
reference_opt = distrain.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
for x, y in steps:
    reference_opt.zero_grad()
    nn.functional.cross_entropy(reference(distrain.tensor(x)), distrain.tensor(y)).backward()
    reference_opt.step()

local = build().double()
if rank == 1:  # different starting weights on another rank: DDP must broadcast rank 0's
    for p in local.parameters():
        p.data = p.data * 3.0
model = DistributedDataParallel(local, bucket_cap_mb=0.0005)  # tiny buckets: several allreduces in flight
assert len(model._buckets) > 1
optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for x, y in steps:
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(distrain.tensor(x[mine])), distrain.tensor(y[mine])).backward()
    optimizer.step()

for (name, ours), theirs in zip(local.named_parameters(), reference.parameters()):
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)

# no_sync: the first backward stays local; the next synced one reduces the accumulated sum
optimizer.zero_grad()
x, y = steps[0]
first, second = slice(rank * BATCH, rank * BATCH + 3), slice(rank * BATCH + 3, (rank + 1) * BATCH)
with model.no_sync():
    nn.functional.cross_entropy(model(distrain.tensor(x[first])), distrain.tensor(y[first])).backward()
local_only = local.body[0].weight.grad.numpy().copy()
check = build().double()
check.load_state_dict(local.state_dict())
nn.functional.cross_entropy(check(distrain.tensor(x[first])), distrain.tensor(y[first])).backward()
np.testing.assert_allclose(local_only, check.body[0].weight.grad.numpy(), rtol=1e-12)  # nothing was averaged
nn.functional.cross_entropy(check(distrain.tensor(x[second])), distrain.tensor(y[second])).backward()
expected = comm.allgather(check.body[0].weight.grad.numpy().copy()).mean(axis=0)
nn.functional.cross_entropy(model(distrain.tensor(x[second])), distrain.tensor(y[second])).backward()
np.testing.assert_allclose(local.body[0].weight.grad.numpy(), expected, rtol=1e-10)

# a model that differs between ranks is refused on every rank, naming the parameter
try:
    DistributedDataParallel(nn.Linear(4, 3 if rank == 0 else 2))
    raise AssertionError("mismatched models were accepted")
except distrain.DistrainError as error:
    assert "hold different models" in str(error) and "weight" in str(error), error

# Horovod style: the same training with broadcast_parameters + DistributedOptimizer on an unwrapped model
plain = build().double()
if rank == 1:
    for p in plain.parameters():
        p.data = p.data * 3.0
dist.broadcast_parameters(plain.state_dict(), root_rank=0)
horovod = dist.DistributedOptimizer(distrain.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9),
                                    plain.named_parameters(), bucket_cap_mb=0.0005)
for x, y in steps:
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    horovod.zero_grad()
    nn.functional.cross_entropy(plain(distrain.tensor(x[mine])), distrain.tensor(y[mine])).backward()
    horovod.step()
for (name, ours), theirs in zip(plain.named_parameters(), reference.parameters()):
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)

# join(): rank r has r + 1 batches. Each iteration's gradient is the sum over the ranks that still have data,
# divided by the whole world size (PyTorch's rule); nothing hangs when the ranks run out at different times.
uneven = [[(rng.standard_normal((BATCH, 5)), rng.integers(0, 3, BATCH)) for _ in range(r + 1)] for r in range(size)]
joined_reference = build().double()
joined_reference_opt = distrain.optim.SGD(joined_reference.parameters(), lr=0.1, momentum=0.9)
for i in range(size):
    joined_reference_opt.zero_grad()
    for r in range(size):
        if i < len(uneven[r]):
            x, y = uneven[r][i]
            (nn.functional.cross_entropy(joined_reference(distrain.tensor(x)), distrain.tensor(y)) / size).backward()
    joined_reference_opt.step()
joining = DistributedDataParallel(build().double(), bucket_cap_mb=0.0005)
joining_opt = distrain.optim.SGD(joining.parameters(), lr=0.1, momentum=0.9)
with joining.join():
    for x, y in uneven[rank]:
        joining_opt.zero_grad()
        nn.functional.cross_entropy(joining(distrain.tensor(x)), distrain.tensor(y)).backward()
        joining_opt.step()
for (name, ours), theirs in zip(joining.module.named_parameters(), joined_reference.parameters()):
    if name.startswith("unused"):
        continue  # momentum keeps zero-gradient parameters still in both; nothing to compare
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
comm.barrier()  # every rank left join() and is in step

# join() with BatchNorm: each forward takes the buffers of the lowest rank still training (rank 0 stops first
# here), so the running statistics follow the chain B_i = update(B_(i-1), batch of rank i at iteration i - 1).
def bn_model():
    distrain.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)).double()


chain = bn_model()
for i in range(1, size):
    chain(distrain.tensor(uneven[i][i - 1][0]))
chain(distrain.tensor(uneven[size - 1][size - 1][0]))  # the last iteration: the last rank alone
bn = DistributedDataParallel(bn_model(), bucket_cap_mb=0.0005)
bn_opt = distrain.optim.SGD(bn.parameters(), lr=0.0)  # weights still: only the statistics matter here
with bn.join():
    for x, _ in uneven[rank]:
        bn_opt.zero_grad()
        bn(distrain.tensor(x)).sum().backward()
        bn_opt.step()
np.testing.assert_allclose(bn.module[1].running_mean.numpy(), chain[1].running_mean.numpy(), rtol=1e-12)
np.testing.assert_allclose(bn.module[1].running_var.numpy(), chain[1].running_var.numpy(), rtol=1e-12)

# gradient_compression="fp16": each bucket travels as float16, scaled by 1/size before the sum. The result is
# the mean to float16 precision, holds only float16-representable values, and is the same on every rank.
compressed = build()  # float32
compressed_model = DistributedDataParallel(compressed, bucket_cap_mb=0.0005, gradient_compression="fp16")
x, y = steps[0]
mine = slice(rank * BATCH, (rank + 1) * BATCH)
nn.functional.cross_entropy(compressed_model(distrain.tensor(x[mine].astype(np.float32))),
                            distrain.tensor(y[mine])).backward()
alone = build()
nn.functional.cross_entropy(alone(distrain.tensor(x[mine].astype(np.float32))), distrain.tensor(y[mine])).backward()
for (name, ours), mine_only in zip(compressed.named_parameters(), alone.parameters()):
    mine_grad = np.zeros(tuple(mine_only.shape)) if mine_only.grad is None else mine_only.grad.numpy()  # unused: 0
    every = comm.allgather(mine_grad.astype(np.float64))
    got = ours.grad.numpy()
    np.testing.assert_allclose(got, every.mean(axis=0), rtol=0, atol=2.0 ** -9 * np.abs(every).max() + 1e-7,
                               err_msg=name)
    assert np.array_equal(got, got.astype(np.float16).astype(np.float32)), f"{name}: not float16 on the wire"
    assert (comm.allgather(got) == got).all(), f"{name}: ranks disagree"
try:
    DistributedDataParallel(build(), gradient_compression="int8")
    raise AssertionError("an unknown compression was accepted")
except ValueError as error:
    assert "gradient_compression" in str(error) and "int8" in str(error), error

dist.shutdown()
print(f"rank {rank} ok", flush=True)
