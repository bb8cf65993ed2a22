"""A training loop without DDP, in the style of PyTorch's "Writing Distributed Applications" tutorial: the
dataset is partitioned by hand, rank 0's initial weights are broadcast, gradients are averaged with all_reduce
after backward, and metrics are combined with all_reduce (SUM, MAX, AVG) and all_gather.

    torchrun --nproc_per_node N allreduce_custom_loop.py EPOCHS

Every rank prints `LOSS <rank> <epoch> <step> <loss>`; rank 0 prints `EPOCH <epoch> <mean loss>`,
`WORST <epoch> <largest rank loss>`, `AVG <epoch> <mean of the ranks' losses>` and `GATHERED <epoch> <rank> <loss>`.
"""
import random
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
# --- end of imports


class Partition:
    """A view of some of a dataset's samples."""

    def __init__(self, data, index):
        self.data = data
        self.index = index

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return self.data[self.index[i]]


class DataPartitioner:
    """Shuffles the sample indices once (Python's random, seeded) and cuts them into one part per rank."""

    def __init__(self, data, sizes, seed=1234):
        self.data = data
        self.partitions = []
        rng = random.Random(seed)
        indexes = list(range(len(data)))
        rng.shuffle(indexes)
        for fraction in sizes:
            part_len = int(fraction * len(data))
            self.partitions.append(indexes[:part_len])
            indexes = indexes[part_len:]

    def use(self, partition):
        return Partition(self.data, self.partitions[partition])


def dataset():
    rng = np.random.default_rng(11)
    inputs = rng.normal(size=(360, 12)).astype(np.float32)
    labels = (inputs[:, :3].sum(axis=1) > 0).astype(np.int64) + (inputs[:, 3] > 1).astype(np.int64)
    return [(torch.from_numpy(inputs[i]), int(labels[i])) for i in range(len(labels))]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 24)
        self.fc2 = nn.Linear(24, 3)

    def forward(self, x):
        return F.log_softmax(self.fc2(torch.tanh(self.fc1(x))), dim=1)


def average_gradients(model):
    size = float(dist.get_world_size())
    for param in model.parameters():
        dist.all_reduce(param.grad.data, op=dist.ReduceOp.SUM)
        param.grad.data /= size


def run(epochs):
    rank, size = dist.get_rank(), dist.get_world_size()
    partition = DataPartitioner(dataset(), [1.0 / size] * size).use(rank)
    model = Net()
    rng = np.random.default_rng(100 + rank)  # different on every rank until rank 0's are broadcast
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.from_numpy(rng.normal(0, 0.4, size=tuple(param.shape)).astype(np.float32)))
    for param in model.parameters():
        dist.broadcast(param.data, src=0)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    batch = 24
    for epoch in range(epochs):
        epoch_loss = torch.zeros(1)
        for step, start in enumerate(range(0, len(partition), batch)):
            samples = [partition[i] for i in range(start, min(start + batch, len(partition)))]
            data = torch.stack([x for x, _ in samples])
            target = torch.tensor([y for _, y in samples])
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            epoch_loss += loss.detach()
            loss.backward()
            average_gradients(model)
            optimizer.step()
            print(f"LOSS {rank} {epoch} {step} {loss.item():.9g}", flush=True)
        mean = epoch_loss / (step + 1)
        total, worst, average = mean.clone(), mean.clone(), mean.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        dist.all_reduce(average, op=dist.ReduceOp.AVG)
        gathered = [torch.zeros(1) for _ in range(size)]
        dist.all_gather(gathered, mean)
        if rank == 0:
            print(f"EPOCH {epoch} {(total / size).item():.9g}", flush=True)
            print(f"WORST {epoch} {worst.item():.9g}", flush=True)
            print(f"AVG {epoch} {average.item():.9g}", flush=True)
            for r, value in enumerate(gathered):
                print(f"GATHERED {epoch} {r} {value.item():.9g}", flush=True)


if __name__ == "__main__":
    dist.init_process_group(backend="gloo")
    run(int(sys.argv[1]))
    dist.destroy_process_group()
