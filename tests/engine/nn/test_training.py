"""End to end: a small CNN trained for a few manual SGD steps in distrain and in torch, from the same weights,
gives the same losses, weights and BatchNorm statistics."""
import numpy as np
import pytest
import torch

import distrain

from ..oracle import FLOAT_DTYPES, assert_close, to_distrain, to_torch
from .module_oracle import assert_same_state, twins


def small_cnn(lib):
    nn = lib.nn
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )


def _sgd_step(model, lr, no_grad):
    with no_grad():
        for p in model.parameters():
            p.data -= lr * p.grad.data


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_small_cnn_sgd_matches_torch(dtype, packed, device):
    d_model, t_model = twins(small_cnn(distrain), small_cnn(torch), dtype, device)
    if packed:
        d_model.pack_parameters()
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-9, 1e-11)
    rng = np.random.default_rng(0)
    d_loss_fn, t_loss_fn = distrain.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    for step in range(5):
        x = rng.standard_normal((4, 3, 8, 8)).astype(dtype)
        y = rng.integers(0, 3, 4).astype(np.int64)
        d_model.zero_grad()
        t_model.zero_grad()
        d_loss = d_loss_fn(d_model(to_distrain(x, device)), to_distrain(y, device))
        t_loss = t_loss_fn(t_model(to_torch(x)), to_torch(y))
        np.testing.assert_allclose(d_loss.item(), t_loss.item(), rtol=rtol, atol=atol, err_msg=f"loss at step {step}")
        d_loss.backward()
        t_loss.backward()
        _sgd_step(d_model, 0.5, distrain.no_grad)
        _sgd_step(t_model, 0.5, torch.no_grad)
        assert_same_state(d_model, t_model, rtol, atol, what=f"step {step}: ")
    # eval mode uses the running statistics both models accumulated
    d_model.eval()
    t_model.eval()
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    assert_close(d_model(to_distrain(x, device)), t_model(to_torch(x)), rtol, atol, what="eval output")
