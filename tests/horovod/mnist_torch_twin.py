"""mnist_hvd.py's twin: the same training written for PyTorch DDP + gloo, run by torchrun (the oracle).

Run: python -m torch.distributed.run --standalone --nproc_per_node N mnist_torch_twin.py [plain|accumulate|fp16]
Every rank performs rank 0's 'resume' itself (what broadcast_parameters and
broadcast_optimizer_state achieve in the Horovod program); backward_passes_per_step=2 is
no_sync() over the first of two batches; Compression.fp16 is torch's fp16_compress_hook.
"""
import json
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import mnist_data

variant = sys.argv[1] if len(sys.argv) > 1 else "plain"
torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 12, kernel_size=3)
        self.fc1 = nn.Linear(48, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.view(-1, 48)))
        return F.log_softmax(self.fc2(x), dim=1)


dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()
train_set = TensorDataset(torch.from_numpy(mnist_data.images[:mnist_data.TRAIN]),
                          torch.from_numpy(mnist_data.labels[:mnist_data.TRAIN]))
test_set = TensorDataset(torch.from_numpy(mnist_data.images[mnist_data.TRAIN:]),
                         torch.from_numpy(mnist_data.labels[mnist_data.TRAIN:]))
train_sampler = DistributedSampler(train_set, num_replicas=size, rank=rank, shuffle=False)
test_sampler = DistributedSampler(test_set, num_replicas=size, rank=rank, shuffle=False)
train_loader = DataLoader(train_set, batch_size=mnist_data.BATCH, sampler=train_sampler)
test_loader = DataLoader(test_set, batch_size=mnist_data.BATCH, sampler=test_sampler)

model = Net()
model.load_state_dict({name: torch.from_numpy(value) for name, value in mnist_data.initial.items()})
optimizer = torch.optim.SGD(model.parameters(), lr=0.01 * size, momentum=0.5)
optimizer.param_groups[0]["lr"] = mnist_data.RESUME_LR  # rank 0's resume, on every rank
F.nll_loss(model(torch.from_numpy(mnist_data.images[mnist_data.RESUME_BATCH])),
           torch.from_numpy(mnist_data.labels[mnist_data.RESUME_BATCH])).backward()
optimizer.step()
optimizer.zero_grad()
optimizer.param_groups[0]["lr"] = 0.01 * size * 0.9
ddp = DistributedDataParallel(model)
if variant == "fp16":
    ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
passes = 2 if variant == "accumulate" else 1

losses, metrics = [], []
for epoch in range(mnist_data.EPOCHS):
    ddp.train()
    for batch_index, (data, target) in enumerate(train_loader):
        if batch_index % passes == 0:
            optimizer.zero_grad()
        last = batch_index % passes == passes - 1
        if last:
            loss = F.nll_loss(ddp(data), target)
            loss.backward()
        else:
            with ddp.no_sync():
                loss = F.nll_loss(ddp(data), target)
                loss.backward()
        losses.append(loss.item())
        if last:
            optimizer.step()
    ddp.eval()
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for data, target in test_loader:
            output = ddp(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            correct += output.argmax(dim=1).eq(target).sum().item()
    test_loss /= len(test_sampler)
    averaged = []
    for value in (test_loss, correct / len(test_sampler)):
        tensor = torch.tensor(value)
        dist.all_reduce(tensor)
        averaged.append((tensor / size).item())
    metrics.append(averaged)
print("RESULT " + json.dumps({"rank": rank, "losses": losses, "metrics": metrics}), flush=True)
dist.barrier()
dist.destroy_process_group()
