"""A torchrun-launched DDP training script with snapshot resume, in the style of PyTorch's DDP tutorial series.

Run as `torchrun --nproc_per_node N ddp_snapshot_torchrun.py EPOCHS SAVE_EVERY SNAPSHOT` (the PyTorch twin) or with
the imports changed to distrain's under `python -m distrain.launch --nproc_per_node N ...` (tests/compat).
Every rank prints `LOSS <rank> <epoch> <step> <loss>` per step and `MEAN <epoch> <loss>` (rank 0, all-reduced).
"""
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
# --- end of imports


class Blobs(Dataset):
    """Four Gaussian blobs in 20 dimensions, made with NumPy so that both twins see the same numbers."""

    def __init__(self, size):
        rng = np.random.default_rng(7)
        self.labels = rng.integers(0, 4, size=size)
        centres = rng.normal(0, 0.25, size=(4, 20))
        self.inputs = (centres[self.labels] + rng.normal(0, 1, size=(size, 20))).astype(np.float32)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return torch.tensor(self.inputs[index]), int(self.labels[index])


def initialise(model, seed):
    """Weights from NumPy: the two frameworks' random generators differ, the programs must not."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.from_numpy(rng.normal(0, 0.3, size=tuple(parameter.shape)).astype(np.float32)))


class Trainer:
    def __init__(self, model, train_data, optimizer, save_every, snapshot_path):
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.global_rank = int(os.environ["RANK"])
        self.model = model
        self.train_data = train_data
        self.optimizer = optimizer
        self.save_every = save_every
        self.snapshot_path = snapshot_path
        self.epochs_run = 0
        if os.path.exists(snapshot_path):
            self._load_snapshot(snapshot_path)
        self.model = DDP(self.model)

    def _load_snapshot(self, path):
        snapshot = torch.load(path, map_location="cpu")
        self.model.load_state_dict(snapshot["MODEL_STATE"])
        self.optimizer.load_state_dict(snapshot["OPTIMIZER_STATE"])
        self.epochs_run = snapshot["EPOCHS_RUN"]
        print(f"rank {self.global_rank}: resuming from the snapshot at epoch {self.epochs_run}", flush=True)

    def _run_batch(self, source, targets):
        self.optimizer.zero_grad()
        output = self.model(source)
        loss = F.cross_entropy(output, targets)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _run_epoch(self, epoch):
        self.train_data.sampler.set_epoch(epoch)
        total = torch.zeros(2)
        for step, (source, targets) in enumerate(self.train_data):
            loss = self._run_batch(source, targets)
            print(f"LOSS {self.global_rank} {epoch} {step} {loss.item():.9g}", flush=True)
            total += torch.stack([loss * len(targets), torch.tensor(float(len(targets)))])
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        if self.global_rank == 0:
            print(f"MEAN {epoch} {(total[0] / total[1]).item():.9g}", flush=True)

    def _save_snapshot(self, epoch):
        snapshot = {"MODEL_STATE": self.model.module.state_dict(), "OPTIMIZER_STATE": self.optimizer.state_dict(),
                    "EPOCHS_RUN": epoch + 1}
        torch.save(snapshot, self.snapshot_path)

    def train(self, max_epochs):
        for epoch in range(self.epochs_run, max_epochs):
            self._run_epoch(epoch)
            if self.global_rank == 0 and (epoch + 1) % self.save_every == 0:
                self._save_snapshot(epoch)
            dist.barrier()  # the snapshot is complete before any rank could stop and resume from it


def main(total_epochs, save_every, snapshot_path):
    dist.init_process_group(backend="gloo")
    dataset = Blobs(240)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))
    initialise(model, seed=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(dataset, batch_size=16, pin_memory=False, shuffle=False,
                        sampler=DistributedSampler(dataset, shuffle=False))
    Trainer(model, loader, optimizer, save_every, snapshot_path).train(total_epochs)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
