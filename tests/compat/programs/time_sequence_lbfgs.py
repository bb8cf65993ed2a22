"""Sine-wave prediction with two LSTMCells trained by L-BFGS, in the style of pytorch/examples'
time_sequence_prediction: double precision, a closure that recomputes the loss, and future steps predicted by
feeding the output back in.

    python time_sequence_lbfgs.py STEPS     # prints `LOSS <step> <evaluation> <loss>` and `TEST <step> <loss>`
"""
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
# --- end of imports


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, 24)
        self.lstm2 = nn.LSTMCell(24, 24)
        self.linear = nn.Linear(24, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), 24, dtype=torch.double)
        c_t = torch.zeros(input.size(0), 24, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), 24, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), 24, dtype=torch.double)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


def waves():
    rng = np.random.default_rng(2)
    x = np.arange(60)[None, :] + rng.integers(-20, 20, size=(12, 1))
    return np.sin(x / 6.0).astype(np.float64)


def main(steps):
    data = waves()
    input, target = torch.from_numpy(data[3:, :-1]), torch.from_numpy(data[3:, 1:])
    test_input, test_target = torch.from_numpy(data[:3, :-1]), torch.from_numpy(data[:3, 1:])
    seq = Sequence()
    seq.double()
    rng = np.random.default_rng(4)
    with torch.no_grad():
        for parameter in seq.parameters():
            parameter.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, size=tuple(parameter.shape))))
    criterion = nn.MSELoss()
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8, max_iter=8)
    for step in range(steps):
        evaluations = []

        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            evaluations.append(loss.item())
            loss.backward()
            return loss
        optimizer.step(closure)
        for index, value in enumerate(evaluations):
            print(f"LOSS {step} {index} {value:.12g}")
        with torch.no_grad():
            future = 10
            pred = seq(test_input, future=future)
            loss = criterion(pred[:, :-future], test_target)
            print(f"TEST {step} {loss.item():.12g}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
