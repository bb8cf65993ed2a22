"""Asynchronous data-parallel training on parameter servers: fast ranks do not wait for a slow one.

Run it on 4 processes of this machine, asynchronously with a staleness bound of 2 steps:

    python -m distrain.launch -n 4 --backend ps --ps-mode async --staleness 2 examples/param_server_async.py

and the same job synchronously, to compare the time per step (and the accuracy):

    python -m distrain.launch -n 4 --backend ps examples/param_server_async.py

(--epochs N, --straggler-ms MS: how long a rank stalls when it stalls, 0 for never.)

The script is an ordinary PyTorch-style loop: DistributedDataParallel, an SGD optimizer and
a learning-rate scheduler. With `--ps-mode async` nothing in it changes, but what a step
does: `loss.backward()` stays on the rank, and `optimizer.step()` pushes the rank's gradient
to the parameter servers, which run the optimizer (with the learning rate the scheduler set
on this rank) and answer with fresh parameters. No rank waits for the others' gradients.

When it helps: when ranks are stragglers now and then (a noisy neighbour, a garbage
collection, a slow disk read). In synchronous training every step waits for the slowest rank
of that step, so each stall of any rank stalls all of them. Here every rank stalls for
--straggler-ms in a quarter of its steps, at random: synchronously nearly every step of 4
ranks waits for one, asynchronously each rank loses only its own stalls. A rank that is
always slower than the others gains nothing from it: the others soon run K steps ahead and
wait for it anyway.

What K (--staleness) means: a rank may run at most K steps ahead of the slowest rank; its
push is answered only when it is no further ahead. K = 0 is synchronous training again (bit
for bit), K = inf never waits. The price of K > 0 is staleness: a gradient is computed on
parameters that miss the updates applied since, which the script prints per rank as a
histogram {staleness: steps}. A gradient's staleness is the number of updates between the
parameters it was computed on and its own: about N - 1 for N ranks in step, and more than K
when ranks stall, since every other rank pushes meanwhile.

Before evaluating, `model.pull_parameters()` gives every rank the servers' latest
parameters: asynchronous ranks end their loops holding parameters of different versions.
"""
import argparse
import time

import numpy as np

import distrain
import distrain.distributed as dist
import distrain.nn as nn
from distrain.data import DataLoader, DistributedSampler, TensorDataset
from distrain.parallel import DistributedDataParallel


def make_data(samples, seed):
    """A 4-class problem a small MLP learns: labels from a fixed random teacher, with some label noise."""
    rng = np.random.default_rng(seed)
    teacher = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    inputs = rng.standard_normal((samples, 16)).astype(np.float32)
    labels = np.argmax(inputs @ teacher + 0.3 * rng.standard_normal((samples, 4)), axis=1)
    return TensorDataset(distrain.tensor(inputs), distrain.tensor(labels))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Asynchronous training with stragglers.")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--straggler-ms", type=float, default=20.0, help="a stall's length (0: no stalls)")
    args = parser.parse_args(argv)

    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    train, test = make_data(4096, seed=1), make_data(1024, seed=2)
    sampler = DistributedSampler(train, seed=0)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)

    distrain.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)))
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = distrain.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    stalls = np.random.default_rng(rank)  # each rank stalls at its own random steps

    started, steps = None, 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total = distrain.zeros(2)  # summed loss, batches
        for inputs, labels in loader:
            if args.straggler_ms and stalls.random() < 0.25:
                time.sleep(args.straggler_ms / 1000)  # a straggler's moment
            loss = nn.functional.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # asynchronous: push this rank's gradient, take the servers' parameters
            total += distrain.tensor([loss.item(), 1.0])
            steps += 1
            if started is None:  # the clock starts after the first step, which registers with the servers
                started = time.perf_counter()
        scheduler.step()
        dist.all_reduce(total)  # the mean loss over every rank's batches
        if rank == 0:
            print(f"epoch {epoch}: mean loss {(total[0] / total[1]).item():.4f}, lr {scheduler.get_last_lr()[0]:.4f}",
                  flush=True)
    seconds = time.perf_counter() - started

    model.pull_parameters()  # every rank evaluates the servers' latest parameters (synchronous: nothing to do)
    correct = distrain.zeros(2)  # right, seen: each rank scores its share of the test samples
    with distrain.no_grad():
        for inputs, labels in DataLoader(test, batch_size=256, sampler=DistributedSampler(test, shuffle=False)):
            correct += distrain.tensor([float((model(inputs).argmax(dim=1) == labels).sum().item()), len(labels)])
    dist.all_reduce(correct)
    histogram = model.staleness_histogram  # {staleness: steps} of this rank; None in synchronous training
    histograms = [None] * world
    dist.all_gather_object(histograms, None if histogram is None else sorted(histogram.items()))
    if rank == 0:
        print(f"test accuracy: {(correct[0] / correct[1]).item():.3f} ({world} ranks)")
        print(f"time per step: {1000 * seconds / max(steps - 1, 1):.1f} ms ({steps} steps on rank 0)")
        for number, histogram in enumerate(histograms):
            if histogram is None:
                print(f"rank {number}: synchronous, every gradient computed on the latest parameters")
            else:
                print(f"rank {number}: staleness {{staleness: steps}} {dict(histogram)}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
