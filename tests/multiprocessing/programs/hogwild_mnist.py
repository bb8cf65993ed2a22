"""Hogwild training in the style of pytorch/examples' mnist_hogwild: N processes update one shared model.

A PyTorch program; tests/multiprocessing runs it and its distrain twin (the same file with
only the import lines changed, tests/compat/twins.py). The model is shared with
`model.share_memory()` and handed to `mp.Process(target=train, args=(rank, args, model, ...))`;
each process builds its own DataLoader and optimizer.

--mode turns: the processes take turns at every step (all wait at a Barrier after each
turn), so the run is deterministic and the twins can be compared number for number.
--mode free: lock-free Hogwild, the processes race.

Prints `LOSS <rank> <epoch> <step> <loss>` per step (children), then, in the parent, which
sees the shared model the children trained: `EVAL <before|after> <loss>` over the whole
data set and `PARAM <parameter> <element> <value>` for every weight.
"""
import argparse

import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, Subset, TensorDataset
# --- end of imports

WAIT_SECONDS = 120  # a sibling that does not reach the barrier in time fails the run instead of hanging it


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=3)
        self.conv2 = nn.Conv2d(4, 8, kernel_size=3)
        self.fc1 = nn.Linear(72, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(self.conv2(x))
        x = x.view(-1, 72)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


def digits(size, seed):
    """Ten noisy 12x12 patterns, made with NumPy so that both twins see the same numbers."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(0, 1, size=(10, 1, 12, 12))
    labels = rng.integers(0, 10, size=size)
    images = (templates[labels] + rng.normal(0, 1.5, size=(size, 1, 12, 12))).astype(np.float32)
    return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def initialise(model, seed):
    """Weights from NumPy: the two frameworks' random generators differ, the programs must not."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            scale = 1.0 / np.sqrt(max(parameter[0].numel(), 1))
            parameter.copy_(torch.from_numpy(rng.uniform(-scale, scale, size=tuple(parameter.shape)).astype(np.float32)))


def train(rank, args, model, dataset, barrier):
    torch.manual_seed(args.seed + rank)
    part = Subset(dataset, list(range(rank, len(dataset), args.num_processes)))
    loader = DataLoader(part, batch_size=args.batch_size, shuffle=False)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    model.train()
    for epoch in range(args.epochs):
        for step, (data, target) in enumerate(loader):
            for turn in range(args.num_processes if args.mode == "turns" else 1):
                if args.mode == "free" or turn == rank:
                    optimizer.zero_grad()
                    loss = F.nll_loss(model(data), target)
                    loss.backward()
                    optimizer.step()
                    print(f"LOSS {rank} {epoch} {step} {loss.item():.7g}", flush=True)
                if args.mode == "turns":
                    barrier.wait(WAIT_SECONDS)


def evaluate(model, dataset):
    model.eval()
    with torch.no_grad():
        data, target = next(iter(DataLoader(dataset, batch_size=len(dataset))))
        return F.nll_loss(model(data), target).item()


def main():
    parser = argparse.ArgumentParser(description="Hogwild training on synthetic digits")
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--start-method", default="fork")
    parser.add_argument("--mode", choices=["turns", "free"], default="turns")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    mp.set_start_method(args.start_method)
    torch.manual_seed(args.seed)
    dataset = digits(240, args.seed)
    model = Net()
    initialise(model, args.seed)
    model.share_memory()
    print(f"EVAL before {evaluate(model, dataset):.7g}", flush=True)

    barrier = mp.Barrier(args.num_processes)
    processes = []
    for rank in range(args.num_processes):
        process = mp.Process(target=train, args=(rank, args, model, dataset, barrier))
        process.start()
        processes.append(process)
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"process {process.pid} failed with exit code {process.exitcode}"

    print(f"EVAL after {evaluate(model, dataset):.7g}", flush=True)
    for index, parameter in enumerate(model.parameters()):
        for element, value in enumerate(parameter.detach().reshape(-1).tolist()):
            print(f"PARAM {index} {element} {value:.7g}")


if __name__ == "__main__":
    main()
