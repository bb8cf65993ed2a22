"""The default job of `python -m distrain.launch` with no script: a small real data-parallel run.

Every rank builds the same MLP, takes its share of a synthetic classification problem
(two Gaussian blobs per class) with DistributedSampler, trains with DistributedDataParallel
and SGD for a few epochs, and rank 0 prints the loss per epoch and the final accuracy,
averaged over ranks with an allreduce.
"""
from __future__ import annotations

import numpy


def main():
    import distrain
    import distrain.distributed as dist
    import distrain.nn as nn
    from distrain.data import DataLoader, DistributedSampler, TensorDataset
    from distrain.parallel import DistributedDataParallel

    comm = dist.init()
    rng = numpy.random.default_rng(0)  # the same data on every rank; the sampler splits it
    classes, per_class = 4, 512
    centers = rng.standard_normal((classes, 16)) * 0.6  # overlapping classes: a task that takes epochs
    x = numpy.concatenate([centers[c] + rng.standard_normal((per_class, 16)) for c in range(classes)]).astype("float32")
    y = numpy.repeat(numpy.arange(classes), per_class)
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, seed=0)
    loader = DataLoader(dataset, batch_size=64, sampler=sampler)
    distrain.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, classes)))
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        total = numpy.zeros(2)
        for features, labels in loader:
            loss = nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += (loss.item(), 1)
        comm.allreduce(total, "sum")
        if comm.rank == 0:
            print(f"epoch {epoch}: mean loss {total[0] / total[1]:.4f} over {comm.size} rank(s)", flush=True)
    with distrain.no_grad():
        correct = numpy.array([float((model(distrain.tensor(x)).argmax(dim=1).numpy() == y).mean())])
    comm.allreduce(correct, "mean")
    if comm.rank == 0:
        print(f"accuracy: {correct[0]:.3f}", flush=True)
    dist.shutdown()
    return 0
