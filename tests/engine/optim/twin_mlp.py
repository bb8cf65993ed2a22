"""The optimizer tests' oracle: one small MLP built twice, in distrain and in PyTorch, from the same numbers.

    out = relu(x @ w1 + b1) @ w2 + b2,   loss = mse(out, y) or cross_entropy(out, labels)

`train(lib, ...)` runs the same training loop with either library (their names are the
same: `lib.optim.Adam`, `lib.nn.functional.mse_loss`, ...) and returns the trajectory of
the parameters, one row per step, so a test compares distrain's rows with torch's.
"""
from __future__ import annotations

import numpy as np
import torch

import distrain

SHAPES = {"w1": (5, 7), "b1": (7,), "w2": (7, 3), "b2": (3,)}
BATCH = 12


def initial_weights(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * 0.5).astype(dtype) for name, shape in SHAPES.items()}


def batches(dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((BATCH, 5)).astype(dtype), rng.standard_normal((BATCH, 3)).astype(dtype),
             rng.integers(0, 3, BATCH)) for _ in range(steps)]


def make_params(lib, weights, frozen=()):
    """{name: leaf tensor}: distrain.nn.Parameters, or torch leaves, holding copies of `weights`."""
    params = {}
    for name, array in weights.items():
        if lib is torch:
            params[name] = torch.tensor(array.copy(), requires_grad=name not in frozen)
        else:
            params[name] = distrain.nn.Parameter(distrain.tensor(array.copy()), requires_grad=name not in frozen)
    return params


def forward_loss(lib, params, batch, loss="mse", sign=1.0, use_b2=True):
    x, y, labels = batch
    tensor = torch.from_numpy if lib is torch else distrain.tensor
    out = lib.relu(tensor(x) @ params["w1"] + params["b1"]) @ params["w2"]
    if use_b2:
        out = out + params["b2"]
    if loss == "mse":
        value = lib.nn.functional.mse_loss(out, tensor(y))
    else:
        value = lib.nn.functional.cross_entropy(out, tensor(labels.astype(np.int64)))
    return value * sign


def snapshot(params):
    rows = []
    for value in params.values():
        array = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value.detach().numpy())
        rows.append(array.ravel().copy())
    return np.concatenate(rows)


def train(lib, optimizer, params, data, loss="mse", sign=1.0, b2_from=0, closure=False, scheduler=None):
    """Run one step per batch; returns (trajectory array of shape (steps, n_values), losses)."""
    rows, losses = [], []
    for index, batch in enumerate(data):
        use_b2 = index >= b2_from

        def compute(batch=batch, use_b2=use_b2):
            optimizer.zero_grad()
            value = forward_loss(lib, params, batch, loss, sign, use_b2)
            value.backward()
            return value

        if closure:
            value = optimizer.step(compute)
        else:
            value = compute()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(float(value.item()))
        rows.append(snapshot(params))
    return np.stack(rows), losses


def build(lib, name, params, kwargs, groups=None, packed=None):
    """`lib.optim.<name>` over `params` (a dict), or over `groups(params)` param groups."""
    chosen = list(params.values()) if groups is None else groups(params)
    extra = {} if lib is torch or packed is None else {"packed": packed}
    return getattr(lib.optim, name)(chosen, **kwargs, **extra)
