"""Two digit classifiers in the style of pytorch/examples' mnist and mnist_rnn: a CNN (conv, relu, max-pool,
dropout, flatten, fc, log_softmax, nll_loss) and an LSTM reading the image row by row (batch_first), both trained
with Adadelta and StepLR, with train/test loops that print progress. Dropout layers are there but with p=0 (the two
frameworks' random generators differ); the 8x8 "digits" are made with NumPy.

    python mnist_styles.py cnn|rnn EPOCHS    # prints `LOSS <epoch> <batch> <loss>`, `TEST <epoch> <loss>`,
                                             # `CORRECT <epoch> <count>` and `LR <epoch> <lr>`
"""
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset
# --- end of imports


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.conv2 = nn.Conv2d(8, 16, 3, 1)
        self.dropout1 = nn.Dropout(0.0)
        self.dropout2 = nn.Dropout(0.0)
        self.fc1 = nn.Linear(16 * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


class RowLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(input_size=8, hidden_size=32, batch_first=True)
        self.batchnorm = nn.BatchNorm1d(32)
        self.dropout1 = nn.Dropout2d(0.0)
        self.fc1 = nn.Linear(32, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, input):
        input = input.reshape(-1, 8, 8)
        output, _ = self.rnn(input)
        output = output[:, -1, :]
        output = self.batchnorm(output)
        output = F.relu(self.fc1(output))
        return F.log_softmax(self.fc2(output), dim=1)


def digits(rng, count):
    """Ten fixed 8x8 patterns with noise: a stand-in for MNIST that needs no download."""
    patterns = np.random.default_rng(0).random((10, 8, 8)) > 0.6
    labels = rng.integers(0, 10, count)
    images = patterns[labels] * 1.0 + rng.normal(0, 0.6, (count, 8, 8))
    return torch.from_numpy(images[:, None].astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


def train(model, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        print(f"LOSS {epoch} {batch_idx} {loss.item():.9g}")


def test(model, test_loader, epoch):
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    test_loss /= len(test_loader.dataset)
    print(f"TEST {epoch} {test_loss:.9g}")
    print(f"CORRECT {epoch} {correct}")


def main(kind, epochs):
    rng = np.random.default_rng(1)
    train_loader = DataLoader(TensorDataset(*digits(rng, 320)), batch_size=32, shuffle=False)
    test_loader = DataLoader(TensorDataset(*digits(rng, 160)), batch_size=64)
    model = Net() if kind == "cnn" else RowLSTM()
    weights = np.random.default_rng(2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.from_numpy(weights.normal(0, 0.2, size=tuple(parameter.shape)).astype(np.float32)))
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, epochs + 1):
        train(model, train_loader, optimizer, epoch)
        test(model, test_loader, epoch)
        scheduler.step()
        print(f"LR {epoch} {scheduler.get_last_lr()[0]:.9g}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
