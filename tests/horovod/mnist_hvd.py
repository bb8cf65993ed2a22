"""A Horovod PyTorch MNIST-style program (the style of horovod/examples/pytorch), with distrain's import.

Run: python -m distrain.launch -n N --backend mpi|ps mnist_hvd.py [plain|accumulate|fp16]
Its twin, mnist_torch_twin.py, is the same training with torch DDP + gloo under torchrun.
Rank 0 alone 'resumes' (one step of its own, and a changed lr): broadcast_parameters and
broadcast_optimizer_state must bring that state to every rank. Prints each rank's losses.
"""
import json
import sys

import distrain as torch
import distrain.horovod as hvd
import distrain.nn as nn
import distrain.nn.functional as F
from distrain.data import DataLoader, DistributedSampler, TensorDataset

import mnist_data

variant = sys.argv[1] if len(sys.argv) > 1 else "plain"


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


hvd.init()
torch.manual_seed(42)
train_set = TensorDataset(torch.from_numpy(mnist_data.images[:mnist_data.TRAIN]),
                          torch.from_numpy(mnist_data.labels[:mnist_data.TRAIN]))
test_set = TensorDataset(torch.from_numpy(mnist_data.images[mnist_data.TRAIN:]),
                         torch.from_numpy(mnist_data.labels[mnist_data.TRAIN:]))
train_sampler = DistributedSampler(train_set, num_replicas=hvd.size(), rank=hvd.rank(), shuffle=False)
test_sampler = DistributedSampler(test_set, num_replicas=hvd.size(), rank=hvd.rank(), shuffle=False)
train_loader = DataLoader(train_set, batch_size=mnist_data.BATCH, sampler=train_sampler)
test_loader = DataLoader(test_set, batch_size=mnist_data.BATCH, sampler=test_sampler)

model = Net()
model.load_state_dict({name: torch.from_numpy(value) for name, value in mnist_data.initial.items()})
lr_scaler = hvd.size()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01 * lr_scaler, momentum=0.5)
if hvd.rank() == 0:  # resumed: rank 0's weights, momentum and lr differ from the others'
    optimizer.param_groups[0]["lr"] = mnist_data.RESUME_LR
    x = torch.from_numpy(mnist_data.images[mnist_data.RESUME_BATCH])
    y = torch.from_numpy(mnist_data.labels[mnist_data.RESUME_BATCH])
    F.nll_loss(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad()
    optimizer.param_groups[0]["lr"] = 0.01 * lr_scaler * 0.9

hvd.broadcast_parameters(model.state_dict(), root_rank=0)
hvd.broadcast_optimizer_state(optimizer, root_rank=0)
passes = 2 if variant == "accumulate" else 1
compression = hvd.Compression.fp16 if variant == "fp16" else hvd.Compression.none
optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(), compression=compression,
                                     backward_passes_per_step=passes, op=hvd.Average)


def metric_average(value, name):
    return hvd.allreduce(torch.tensor(value), name=name).item()


losses, metrics = [], []
for epoch in range(mnist_data.EPOCHS):
    model.train()
    train_sampler.set_epoch(epoch)
    for batch_index, (data, target) in enumerate(train_loader):
        if batch_index % passes == 0:
            optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        losses.append(loss.item())
        if batch_index % passes == passes - 1:
            optimizer.step()
    model.eval()
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            correct += output.argmax(dim=1).eq(target).sum().item()
    test_loss /= len(test_sampler)
    metrics.append([metric_average(test_loss, "avg_loss"), metric_average(correct / len(test_sampler), "avg_accuracy")])
print("RESULT " + json.dumps({"rank": hvd.rank(), "losses": losses, "metrics": metrics}), flush=True)
