"""Adadelta, Adamax, NAdam and RAdam follow PyTorch's parameter trajectories (twin MLP, 50 steps, both paths).

The float64 runs set torch's default dtype to float64: torch keeps NAdam's mu_product and
the step counts as tensors of the default dtype, and distrain keeps Python floats.
"""
import copy

import numpy as np
import pytest
import torch

import distrain

from .test_against_torch import STEPS, TOLERANCE, run_pair
from .twin_mlp import batches, build, initial_weights, make_params, train

OptimizerError = distrain.optim.OptimizerError

CONFIGS = [
    ("Adadelta", {}, 1.0, "mse"),
    ("Adadelta", {"lr": 0.5, "rho": 0.95, "eps": 1e-5, "weight_decay": 0.01}, 1.0, "ce"),
    ("Adadelta", {"maximize": True}, -1.0, "mse"),
    ("Adamax", {"lr": 0.01}, 1.0, "mse"),
    ("Adamax", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}, 1.0, "ce"),
    ("Adamax", {"lr": 0.01, "maximize": True}, -1.0, "mse"),
    ("NAdam", {"lr": 0.01}, 1.0, "mse"),
    ("NAdam", {"lr": 0.01, "betas": (0.8, 0.99), "momentum_decay": 0.01, "weight_decay": 0.05}, 1.0, "ce"),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}, -1.0, "mse"),
    ("RAdam", {"lr": 0.01}, 1.0, "mse"),
    ("RAdam", {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.05}, 1.0, "ce"),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}, -1.0, "mse"),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}" for name, kwargs, _, _ in CONFIGS]


@pytest.fixture
def torch_default_dtype():
    """Set torch's default dtype for one test (its scalar state follows it); restored afterwards."""
    previous = torch.get_default_dtype()
    yield torch.set_default_dtype
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "per-parameter"])
@pytest.mark.parametrize("name, kwargs, sign, loss", CONFIGS, ids=IDS)
def test_trajectory_matches_torch(name, kwargs, sign, loss, dtype, packed, torch_default_dtype):
    torch_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    (ours, our_losses), (theirs, _) = run_pair(name, kwargs, sign, loss, dtype, packed)
    for step in range(STEPS):
        np.testing.assert_allclose(ours[step], theirs[step], **TOLERANCE[dtype], err_msg=f"{name} step {step + 1}")
    assert abs(our_losses[-1]) != abs(our_losses[0])  # it trained


@pytest.mark.parametrize("name, kwargs, sign, loss", CONFIGS, ids=IDS)
def test_packed_and_per_parameter_paths_agree_bit_for_bit(name, kwargs, sign, loss):
    weights, data = initial_weights(np.float32), batches(np.float32, 10)
    trajectories = []
    for packed in (True, False):
        params = make_params(distrain, weights)
        trajectories.append(train(distrain, build(distrain, name, params, kwargs, packed=packed), params, data,
                                  loss=loss, sign=sign)[0])
    np.testing.assert_array_equal(trajectories[0], trajectories[1])


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "NAdam", "RAdam"])
def test_one_update_call_per_buffer_when_packed(name, monkeypatch):
    calls = []
    cls = getattr(distrain.optim, name)
    original = cls._update
    monkeypatch.setattr(cls, "_update", lambda self, chunk, group: calls.append(len(chunk)) or
                        original(self, chunk, group))
    params = make_params(distrain, initial_weights(np.float32))
    train(distrain, build(distrain, name, params, {}), params, batches(np.float32, 3))
    assert calls == [66] * 3


def test_param_groups_and_late_parameters_match_torch(torch_default_dtype):
    """Two groups with their own lr and weight decay; b2 joins at step 5 with its own step count (and mu_product)."""
    torch_default_dtype(torch.float64)

    def groups(params):
        return [{"params": [params["w1"], params["b1"]], "lr": 0.02, "weight_decay": 0.1},
                {"params": [params["w2"], params["b2"]]}]

    for name in ("Adadelta", "Adamax", "NAdam", "RAdam"):
        (ours, _), (theirs, _) = run_pair(name, {"lr": 0.005}, 1.0, "mse", np.float64, True, steps=15, groups=groups,
                                          b2_from=5)
        np.testing.assert_allclose(ours, theirs, **TOLERANCE[np.float64], err_msg=name)


@pytest.mark.parametrize("name, kwargs", [("Adadelta", {}), ("Adamax", {}), ("NAdam", {"momentum_decay": 0.01}),
                                          ("RAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1})])
def test_state_dict_has_torchs_layout_and_loads_both_ways(name, kwargs, torch_default_dtype):
    torch_default_dtype(torch.float64)
    weights, data = initial_weights(np.float64), batches(np.float64, 12)
    optimizers, params = {}, {}
    for lib in (distrain, torch):
        params[lib] = make_params(lib, weights)
        optimizers[lib] = build(lib, name, params[lib], kwargs)
        train(lib, optimizers[lib], params[lib], data[:7])
    ours, theirs = optimizers[distrain].state_dict(), optimizers[torch].state_dict()
    assert set(ours["param_groups"][0]) == set(theirs["param_groups"][0]) - {"foreach", "capturable",
                                                                            "differentiable"}
    for index, state in theirs["state"].items():
        assert set(ours["state"][index]) == set(state)
        for key, value in state.items():
            mine = ours["state"][index][key]
            np.testing.assert_allclose(np.asarray(mine.numpy() if hasattr(mine, "numpy") else mine), value.numpy(),
                                       rtol=1e-9, err_msg=key)
    # torch's state dict loaded into a fresh distrain optimizer continues like torch
    fresh = make_params(distrain, {key: value.detach().numpy() for key, value in params[torch].items()})
    resumed = build(distrain, name, fresh, {})
    resumed.load_state_dict(copy.deepcopy(theirs))
    continued = train(distrain, resumed, fresh, data[7:])[0]
    expected = train(torch, optimizers[torch], params[torch], data[7:])[0]
    np.testing.assert_allclose(continued, expected, **TOLERANCE[np.float64])
    # and ours continues identically after a round trip
    saved = copy.deepcopy(ours)
    again = make_params(distrain, {key: np.array(value.detach().numpy()) for key, value in params[distrain].items()})
    expected_ours = train(distrain, optimizers[distrain], params[distrain], data[7:])[0]
    reloaded = build(distrain, name, again, {}, packed=False)
    reloaded.load_state_dict(saved)
    np.testing.assert_array_equal(train(distrain, reloaded, again, data[7:])[0], expected_ours)


@pytest.mark.parametrize("name, kwargs, message", [
    ("Adadelta", {"rho": 1.5}, "Invalid rho value: 1.5"),
    ("Adadelta", {"lr": -1.0}, "Invalid learning rate: -1.0"),
    ("Adamax", {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
    ("Adamax", {"eps": -1.0}, "Invalid epsilon value"),
    ("NAdam", {"momentum_decay": -0.1}, "Invalid momentum_decay value: -0.1"),
    ("NAdam", {"weight_decay": -0.1}, "Invalid weight_decay value"),
    ("RAdam", {"betas": (-0.1, 0.9)}, "Invalid beta parameter at index 0"),
])
def test_bad_hyperparameters_raise(name, kwargs, message):
    with pytest.raises(ValueError):  # torch refuses it too
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(OptimizerError, match=message):
        getattr(distrain.optim, name)([distrain.nn.Parameter(distrain.randn(2))], **kwargs)
