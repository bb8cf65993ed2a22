"""Data-parallel training on real data: the digits, from shards, on every rank.

Run it on 2 processes of this machine (or under your own mpirun/srun):

    python -m distrain.launch -n 2 examples/ddp_digits.py [--epochs 5] [--data DIR]

(--data: the shard directory, made by rank 0 on first run; default: distrain_digits in
the temporary directory.)

Each rank reads its own share of the training samples (`DistributedSampler`, reshuffled
every epoch by `set_epoch`) through a DataLoader, the model is wrapped in
`DistributedDataParallel` (gradients averaged over ranks during backward), and rank 0
prints the loss and, at the end, the test accuracy averaged over all ranks' test shares.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import distrain
import distrain.distributed as dist
import distrain.nn as nn
from distrain.data import DataLoader, DistributedSampler, ShardDataset, Subset
from distrain.parallel import DistributedDataParallel


def main(argv=None):
    parser = argparse.ArgumentParser(description="Data-parallel CNN training on the digits.")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "distrain_digits"),
                        help="the shard directory (made on first run)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    args = parser.parse_args(argv)

    comm = dist.init()
    if comm.rank == 0 and not os.path.exists(os.path.join(args.data, "index.json")):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_digits_shards import main as make_shards

        make_shards(["--out", args.data])
    comm.barrier()  # the shards exist before any rank opens them

    order = np.random.default_rng(0).permutation(len(ShardDataset(args.data))).tolist()
    train, test = Subset(ShardDataset(args.data), order[300:]), Subset(ShardDataset(args.data), order[:300])
    sampler = DistributedSampler(train, seed=0)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)

    distrain.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10)))
    optimizer = distrain.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        totals = np.zeros(2)
        for batch in loader:
            loss = nn.functional.cross_entropy(model(batch["image"]), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            totals += (loss.item(), 1)
        comm.allreduce(totals, "sum")  # the loss over every rank's batches
        if comm.rank == 0:
            print(f"epoch {epoch}: mean loss {totals[0] / totals[1]:.4f}", flush=True)

    counts = np.zeros(2)  # correct, seen: each rank scores its share of the test samples
    test_sampler = DistributedSampler(test, shuffle=False)
    with distrain.no_grad():
        for batch in DataLoader(test, batch_size=100, sampler=test_sampler):
            counts += (float((model(batch["image"]).argmax(dim=1) == batch["label"]).sum().item()), len(batch["label"]))
    comm.allreduce(counts, "sum")
    accuracy = counts[0] / counts[1]
    if comm.rank == 0:
        print(f"test accuracy: {accuracy:.3f} ({comm.size} ranks)", flush=True)
    dist.shutdown()
    return accuracy


if __name__ == "__main__":
    main()
