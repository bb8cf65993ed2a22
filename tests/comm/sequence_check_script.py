"""Run under `mpiexec -n 2`: DDP's sequence check (parallel.py, NOTE [ sequence check ]) on real ranks.

Each case builds a fresh model (positions start at 0), runs a few steps and prints
"rank R CASE ok" when what it saw is what the check promises:

- normal: what PyTorch's DDP accepts must train as it does: gradient accumulation under
  no_sync() on every rank, evaluation forwards under no_grad() and a metric computed with
  gradients enabled (a forward without backward) on rank 1 only, and a weight penalty
  backpropagated after the reduction on every rank (local, equal everywhere) end with the
  weights of one process trained on the whole batch plus the penalty; so does
  DistributedOptimizer;
- no_sync_on_rank_0: rank 0 skips the reduction of step 2 (no_sync on one rank only).
  Rank 1's reduction of step 2 pairs with rank 0's of step 3: rank 1 raises in step 2,
  rank 0 in step 3, the first steps at which each can know, both naming "rank 0 at 3,
  rank 1 at 2 backwards";
- extra_backward_on_rank_1: rank 1 alone backpropagates a penalty after step 2's
  reduction (its gradients now differ from rank 0's): both raise at the next reduction,
  step 3, naming "rank 0 at 3, rank 1 at 4".

Before the check, both mismatches trained on silently (the buckets have the same sizes
on every rank, so MPI pairs them up): nothing raised, and the test's "ok" lines are missing.
"""
import numpy as np

import distrain
import distrain.distributed as dist
import distrain.nn as nn
from distrain.errors import DistrainError
from distrain.parallel import DistributedDataParallel, DistributedOptimizer

comm = dist.init(timeout=30)
rank, size = comm.rank, comm.size
BATCH, STEPS = 4, 4
rng = np.random.default_rng(0)
DATA = [(rng.standard_normal((BATCH * size, 5)), rng.integers(0, 3, BATCH * size)) for _ in range(STEPS)]


def build():
    """The same model on every rank; no buffers, so no_sync() on one rank changes nothing but the reductions."""
    distrain.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def loss_of(model, x, y):
    return nn.functional.cross_entropy(model(distrain.tensor(x)), distrain.tensor(y))


def mine(array):
    return array[rank * BATCH:(rank + 1) * BATCH]


def penalty(model):
    """A weight penalty that some programs backpropagate on its own after the loss."""
    return (model[0].weight ** 2).sum() * 0.01


def oracle(accumulate_at=None, penalised=False):
    """One process, the whole batch: SGD with momentum; at step `accumulate_at` two half-batch backwards;
    with `penalised`, the penalty's gradient added at every step."""
    model = build()
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step, (x, y) in enumerate(DATA, start=1):
        optimizer.zero_grad()
        if step == accumulate_at:  # rank r's first and second halves, each weighted as DDP's average does
            for half in (slice(0, BATCH // 2), slice(BATCH // 2, BATCH)):
                rows = np.concatenate([np.arange(r * BATCH, (r + 1) * BATCH)[half] for r in range(size)])
                (loss_of(model, x[rows], y[rows]) * 0.5).backward()
        else:
            loss_of(model, x, y).backward()
        if penalised:
            penalty(model).backward()
        optimizer.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


def normal():
    local = build()
    model = DistributedDataParallel(local, bucket_cap_mb=0.0002)  # several buckets in flight
    assert len(model._buckets) > 1
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step, (x, y) in enumerate(DATA, start=1):
        optimizer.zero_grad()
        if rank == 1:
            with distrain.no_grad():  # evaluation on one rank only: not a forward that reduces
                model(distrain.tensor(mine(x)))
            model(distrain.tensor(mine(x))).sum().item()  # a metric with gradients on: PyTorch's DDP allows it
        if step == 2:  # gradient accumulation, on every rank: the first half stays local, the second reduces
            half = BATCH // 2
            with model.no_sync():
                (loss_of(model, mine(x)[:half], mine(y)[:half]) * 0.5).backward()
            (loss_of(model, mine(x)[half:], mine(y)[half:]) * 0.5).backward()
        else:
            loss_of(model, mine(x), mine(y)).backward()
        penalty(local).backward()  # after the reduction, on every rank: local and equal everywhere, as in PyTorch
        optimizer.step()
    for ours, theirs in zip(local.parameters(), oracle(accumulate_at=2, penalised=True)):
        np.testing.assert_allclose(ours.detach().numpy(), theirs, rtol=1e-10, atol=1e-12)

    local = build()
    dist_optimizer = DistributedOptimizer(distrain.optim.SGD(local.parameters(), lr=0.1, momentum=0.9),
                                          local.named_parameters(), bucket_cap_mb=0.0002)
    for x, y in DATA:
        dist_optimizer.zero_grad()
        loss_of(local, mine(x), mine(y)).backward()
        dist_optimizer.step()
    for ours, theirs in zip(local.parameters(), oracle()):
        np.testing.assert_allclose(ours.detach().numpy(), theirs, rtol=1e-10, atol=1e-12)


def train_until_refused(odd_step):
    """Train a fresh DDP model with `odd_step(step, model, x, y)` in place of the usual step;
    returns (the step whose backward raised, the error's text)."""
    model = DistributedDataParallel(build(), bucket_cap_mb=0.0002)
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)
    for step, (x, y) in enumerate(DATA, start=1):
        optimizer.zero_grad()
        try:
            odd_step(step, model, mine(x), mine(y))
        except DistrainError as error:
            return step, str(error)
        optimizer.step()
    raise AssertionError(f"rank {rank}: the ranks went out of step and nothing was raised")


def no_sync_on_rank_0():
    def step_with(step, model, x, y):
        if step == 2 and rank == 0:
            with model.no_sync():
                loss_of(model, x, y).backward()
        else:
            loss_of(model, x, y).backward()

    step, message = train_until_refused(step_with)
    assert step == (3 if rank == 0 else 2), (step, message)
    assert "DistributedDataParallel: the ranks are out of step: rank 0 at 3, rank 1 at 2 backwards" in message, message


def extra_backward_on_rank_1():
    def step_with(step, model, x, y):
        loss_of(model, x, y).backward()
        if step == 2 and rank == 1:
            penalty(model.module).backward()  # after the reduction, on one rank only: its gradients drift apart

    step, message = train_until_refused(step_with)
    assert step == 3, (step, message)
    assert "DistributedDataParallel: the ranks are out of step: rank 0 at 3, rank 1 at 4 backwards" in message, message


for case in (normal, no_sync_on_rank_0, extra_backward_on_rank_1):
    case()
    comm.barrier()  # every rank is past this case, in step
    print(f"rank {rank} {case.__name__} ok", flush=True)
