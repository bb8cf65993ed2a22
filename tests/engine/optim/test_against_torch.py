"""Every optimizer, over a range of hyperparameters, follows PyTorch's parameter trajectory.

50 steps of the twin MLP (twin_mlp.py) with distrain and with torch.optim, from the same
weights and batches; every step's parameters must agree (float32: to rounding; float64:
tightly), on the packed path and on the per-parameter path, and the two paths must agree
with each other bit for bit.
"""
import numpy as np
import pytest
import torch

import distrain
from distrain.engine.optim import chunks

from .twin_mlp import batches, build, initial_weights, make_params, train

STEPS = 50

# (optimizer, hyperparameters, sign of the loss, loss): maximize runs ascend -loss, so they stay bounded.
CONFIGS = [
    ("SGD", {"lr": 0.05}, 1.0, "mse"),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, 1.0, "mse"),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}, 1.0, "ce"),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, 1.0, "mse"),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True}, -1.0, "mse"),
    ("Adam", {"lr": 0.01}, 1.0, "mse"),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}, 1.0, "ce"),
    ("Adam", {"lr": 0.01, "amsgrad": True, "maximize": True}, -1.0, "mse"),
    ("AdamW", {"lr": 0.01}, 1.0, "mse"),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}, 1.0, "ce"),
    ("Adagrad", {"lr": 0.05}, 1.0, "mse"),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1}, 1.0, "ce"),
    ("Adagrad", {"lr": 0.05, "eps": 1e-6, "maximize": True}, -1.0, "mse"),
    ("RMSprop", {"lr": 0.005}, 1.0, "mse"),
    ("RMSprop", {"lr": 0.005, "momentum": 0.9, "centered": True}, 1.0, "mse"),
    ("RMSprop", {"lr": 0.005, "alpha": 0.9, "weight_decay": 0.01, "momentum": 0.5}, 1.0, "ce"),
    ("RMSprop", {"lr": 0.005, "centered": True, "maximize": True}, -1.0, "mse"),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}" for name, kwargs, _, _ in CONFIGS]

# float32: each step's rounding differs from torch's (torch fuses multiply-adds); float64: tight.
TOLERANCE = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-9, "atol": 1e-11}}


def run_pair(name, kwargs, sign, loss, dtype, packed, steps=STEPS, groups=None, **options):
    """Train the twin MLP with distrain and with torch; returns [(trajectory, losses)] for each."""
    weights, data = initial_weights(dtype), batches(dtype, steps)
    results = []
    for lib in (distrain, torch):
        params = make_params(lib, weights)
        optimizer = build(lib, name, params, kwargs, groups=groups, packed=packed)
        results.append(train(lib, optimizer, params, data, loss=loss, sign=sign, **options))
    return results


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "per-parameter"])
@pytest.mark.parametrize("name, kwargs, sign, loss", CONFIGS, ids=IDS)
def test_trajectory_matches_torch(name, kwargs, sign, loss, dtype, packed):
    (ours, our_losses), (theirs, _) = run_pair(name, kwargs, sign, loss, dtype, packed)
    for step in range(STEPS):
        np.testing.assert_allclose(ours[step], theirs[step], **TOLERANCE[dtype], err_msg=f"{name} step {step + 1}")
    assert abs(our_losses[-1]) != abs(our_losses[0])  # it trained


@pytest.mark.parametrize("name, kwargs, sign, loss", CONFIGS, ids=IDS)
def test_packed_and_per_parameter_paths_agree_bit_for_bit(name, kwargs, sign, loss):
    weights, data = initial_weights(np.float32), batches(np.float32, 20)
    trajectories = []
    for packed in (True, False):
        params = make_params(distrain, weights)
        optimizer = build(distrain, name, params, kwargs, packed=packed)
        trajectories.append(train(distrain, optimizer, params, data, loss=loss, sign=sign)[0])
        assert all((p._flat is not None) == packed for p in params.values())
    np.testing.assert_array_equal(trajectories[0], trajectories[1])


def test_one_update_call_per_buffer_when_packed(monkeypatch):
    calls = []
    original = distrain.optim.Adam._update
    monkeypatch.setattr(distrain.optim.Adam, "_update", lambda self, chunk, group: calls.append(len(chunk))
                        or original(self, chunk, group))
    data = batches(np.float32, 3)
    for packed, expected in ((True, [66] * 3), (False, [35, 7, 21, 3] * 3)):
        calls.clear()
        params = make_params(distrain, initial_weights(np.float32))
        train(distrain, build(distrain, "Adam", params, {}, packed=packed), params, data)
        assert calls == expected


def test_blocked_updates_match_torch(monkeypatch):
    """Chunks larger than a block are cut into blocks (here 16 float32s): same numbers."""
    monkeypatch.setattr(chunks, "BLOCK_BYTES", 64)
    (ours, _), (theirs, _) = run_pair("Adam", {"lr": 0.01, "weight_decay": 0.01}, 1.0, "mse", np.float32, True,
                                      steps=10)
    np.testing.assert_allclose(ours, theirs, **TOLERANCE[np.float32])


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "per-parameter"])
def test_param_groups_with_their_own_lr_and_weight_decay(packed):
    def groups(params):
        return [{"params": [params["w1"], params["b1"]], "lr": 0.02, "weight_decay": 0.1},
                {"params": [params["w2"], params["b2"]]}]

    for name in ("SGD", "Adam", "RMSprop"):
        (ours, _), (theirs, _) = run_pair(name, {"lr": 0.005, "momentum": 0.9} if name != "Adam" else {"lr": 0.005},
                                          1.0, "mse", np.float64, packed, steps=20, groups=groups)
        np.testing.assert_allclose(ours, theirs, **TOLERANCE[np.float64])


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "per-parameter"])
def test_parameter_without_grad_for_some_steps_has_its_own_step_count(packed):
    """b2 is unused for 5 steps: skipped (grad None), then its Adam bias correction starts at step 1."""
    (ours, _), (theirs, _) = run_pair("Adam", {"lr": 0.01}, 1.0, "mse", np.float64, packed, steps=15, b2_from=5)
    np.testing.assert_allclose(ours, theirs, **TOLERANCE[np.float64])


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad"])
def test_closure_matches_torch(name):
    (ours, our_losses), (theirs, their_losses) = run_pair(name, {"lr": 0.01}, 1.0, "mse", np.float64, True,
                                                          steps=10, closure=True)
    np.testing.assert_allclose(ours, theirs, **TOLERANCE[np.float64])
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-12)


def test_sequential_model_trains_like_torch():
    distrain.manual_seed(0)
    model = distrain.nn.Sequential(distrain.nn.Linear(5, 8), distrain.nn.ReLU(), distrain.nn.Linear(8, 3))
    reference = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    model = model.to(distrain.float64)
    with torch.no_grad():
        for ours, theirs in zip(model.parameters(), reference.parameters()):
            theirs.copy_(torch.from_numpy(np.asarray(ours.detach().numpy())))
    optimizers = (distrain.optim.AdamW(model.parameters(), lr=0.01), torch.optim.AdamW(reference.parameters(), lr=0.01))
    for x, y, _ in batches(np.float64, 20):
        for lib, net, optimizer in ((distrain, model, optimizers[0]), (torch, reference, optimizers[1])):
            tensor = torch.from_numpy if lib is torch else distrain.tensor
            optimizer.zero_grad()
            lib.nn.functional.mse_loss(net(tensor(x)), tensor(y)).backward()
            optimizer.step()
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        assert ours._flat is not None
        np.testing.assert_allclose(np.asarray(ours.detach().numpy()), theirs.detach().numpy(),
                                   **TOLERANCE[np.float64])


@pytest.mark.parametrize("name, kwargs, sign, loss", CONFIGS[1::2], ids=IDS[1::2])
def test_numpy_float64_hyperparameters_do_not_promote_float32_updates(name, kwargs, sign, loss):
    """np.float64 scalars would make NumPy compute a float32 update in float64: the rules use Python floats."""
    as_numpy = {key: (tuple(np.float64(v) for v in value) if isinstance(value, tuple) else
                      value if isinstance(value, bool) else np.float64(value)) for key, value in kwargs.items()}
    weights, data = initial_weights(np.float32), batches(np.float32, 5)
    trajectories = []
    for hyperparameters in (kwargs, as_numpy):
        params = make_params(distrain, weights)
        optimizer = build(distrain, name, params, hyperparameters)
        trajectories.append(train(distrain, optimizer, params, data, loss=loss, sign=sign)[0])
        assert all(p.dtype == np.float32 for p in params.values())
    np.testing.assert_array_equal(trajectories[0], trajectories[1])
