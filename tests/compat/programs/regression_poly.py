"""Fitting a polynomial with one Linear layer, in the style of pytorch/examples' regression: features x, x^2, x^3,
a target function, smooth L1 loss and plain gradient steps on the parameters (no optimizer object).

    python regression_poly.py STEPS          # prints `LOSS <step> <loss>` and `WEIGHT <index> <value>`
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
# --- end of imports

POLY_DEGREE = 3
W_TARGET = torch.tensor([[0.5], [-1.2], [0.8]])
B_TARGET = torch.tensor([0.3])


def make_features(x):
    """A matrix with columns [x, x^2, x^3]."""
    x = x.unsqueeze(1)
    return torch.cat([x ** i for i in range(1, POLY_DEGREE + 1)], 1)


def f(x):
    return x.mm(W_TARGET) + B_TARGET.item()


def get_batch(rng, batch_size=32):
    random = torch.from_numpy(rng.standard_normal(batch_size).astype(np.float32))
    x = make_features(random)
    return x, f(x)


def main(steps):
    rng = np.random.default_rng(0)
    fc = torch.nn.Linear(W_TARGET.size(0), 1)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.1, 0.2, -0.3]]))
        fc.bias.fill_(0.0)
    for step in range(steps):
        batch_x, batch_y = get_batch(rng)
        fc.zero_grad()
        output = F.smooth_l1_loss(fc(batch_x), batch_y)
        loss = output.item()
        output.backward()
        for param in fc.parameters():
            param.data.add_(-0.1 * param.grad)
        print(f"LOSS {step} {loss:.9g}")
        if loss < 1e-3:
            break
    for index, value in enumerate(fc.weight.view(-1).tolist() + [fc.bias.item()]):
        print(f"WEIGHT {index} {value:.9g}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
