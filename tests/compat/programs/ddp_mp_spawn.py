"""A self-launching DDP program in the style of PyTorch's "Getting Started with DDP" tutorial: mp.spawn starts
the ranks, which meet at MASTER_ADDR:MASTER_PORT set in the script; a toy model trains, rank 0 saves a checkpoint
that every rank loads after a barrier, and training goes on from it.

    python ddp_mp_spawn.py WORLD_SIZE PORT CHECKPOINT

Every rank prints `LOSS <rank> <step> <loss>`; rank 0 prints `PARAM <index> <sum of the parameter>` at the end.
"""
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.optim as optim
from torch.nn.parallel import DistributedDataParallel as DDP
# --- end of imports

STEPS = 6


def setup(rank, world_size, port):
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def cleanup():
    dist.barrier()  # PyTorch's gloo can abort in teardown while a peer still sends (seen with torch 2.13, 3 ranks)
    dist.destroy_process_group()


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net1 = nn.Linear(10, 10)
        self.relu = nn.ReLU()
        self.net2 = nn.Linear(10, 5)

    def forward(self, x):
        return self.net2(self.relu(self.net1(x)))


def batch(rank, step):
    """This rank's batch for this step, from NumPy (the twins' random generators differ)."""
    rng = np.random.default_rng(1000 * step + rank)
    return (torch.from_numpy(rng.normal(size=(20, 10)).astype(np.float32)),
            torch.from_numpy(rng.normal(size=(20, 5)).astype(np.float32)))


def train(rank, ddp_model, optimizer, steps, first):
    loss_fn = nn.MSELoss()
    for step in range(first, first + steps):
        inputs, labels = batch(rank, step)
        optimizer.zero_grad()
        outputs = ddp_model(inputs)
        loss = loss_fn(outputs, labels)
        loss.backward()
        optimizer.step()
        print(f"LOSS {rank} {step} {loss.item():.9g}", flush=True)


def demo_checkpoint(rank, world_size, port, checkpoint_path):
    setup(rank, world_size, port)
    model = ToyModel()
    rng = np.random.default_rng(rank)  # every rank starts differently: DDP's first broadcast makes them rank 0's
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.from_numpy(rng.normal(0, 0.3, size=tuple(parameter.shape)).astype(np.float32)))
    ddp_model = DDP(model)
    optimizer = optim.SGD(ddp_model.parameters(), lr=0.01, momentum=0.5)
    train(rank, ddp_model, optimizer, STEPS // 2, 0)
    if rank == 0:
        torch.save(ddp_model.state_dict(), checkpoint_path)
    dist.barrier()  # the others load only once rank 0 has saved
    ddp_model.load_state_dict(torch.load(checkpoint_path, map_location="cpu", weights_only=True))
    train(rank, ddp_model, optimizer, STEPS - STEPS // 2, STEPS // 2)
    if rank == 0:
        for index, parameter in enumerate(ddp_model.module.parameters()):
            print(f"PARAM {index} {parameter.detach().sum().item():.9g}", flush=True)
    cleanup()


def run_demo(demo_fn, world_size, port, checkpoint_path):
    mp.spawn(demo_fn, args=(world_size, port, checkpoint_path), nprocs=world_size, join=True)


if __name__ == "__main__":
    run_demo(demo_checkpoint, int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
