"""The Optimizer base: state dicts, zero_grad, skipping, packing, and its errors (PyTorch as the oracle)."""
import copy

import numpy as np
import pytest
import torch

import distrain

from .twin_mlp import batches, build, initial_weights, make_params, train

OptimizerError = distrain.optim.OptimizerError


def trained(name, kwargs, packed, steps=5, weights=None, data=None):
    params = make_params(distrain, weights or initial_weights(np.float64))
    optimizer = build(distrain, name, params, kwargs, packed=packed)
    train(distrain, optimizer, params, data or batches(np.float64, steps))
    return params, optimizer


# -- state_dict ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs", [("SGD", {"momentum": 0.9}), ("Adam", {"amsgrad": True}),
                                          ("Adagrad", {}), ("RMSprop", {"momentum": 0.5, "centered": True})])
def test_state_dict_has_torchs_layout_and_values(name, kwargs):
    weights, data = initial_weights(np.float64), batches(np.float64, 7)
    ours = trained(name, kwargs, True, weights=weights, data=data)[1].state_dict()
    torch_params = make_params(torch, weights)
    reference = build(torch, name, torch_params, kwargs)
    train(torch, reference, torch_params, data)
    theirs = reference.state_dict()
    assert [g["params"] for g in ours["param_groups"]] == [g["params"] for g in theirs["param_groups"]]
    assert set(ours["param_groups"][0]) <= set(theirs["param_groups"][0])
    assert sorted(ours["state"]) == sorted(theirs["state"])
    for index, state in theirs["state"].items():
        assert set(ours["state"][index]) == set(state)
        for key, value in state.items():
            if key == "step":
                assert type(ours["state"][index]["step"]) is int and ours["state"][index]["step"] == float(value)
            else:
                np.testing.assert_allclose(np.asarray(ours["state"][index][key].numpy()), value.numpy(), rtol=1e-9)


@pytest.mark.parametrize("save_packed, load_packed", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("name, kwargs", [("SGD", {"lr": 0.05, "momentum": 0.9}), ("Adam", {"lr": 0.01}),
                                          ("RMSprop", {"lr": 0.01, "centered": True})])
def test_state_dict_round_trip_continues_identically(name, kwargs, save_packed, load_packed):
    data = batches(np.float64, 30)
    params, optimizer = trained(name, kwargs, save_packed, data=data[:20])
    saved_state = copy.deepcopy(optimizer.state_dict())
    saved_weights = {key: np.array(value.detach().numpy()) for key, value in params.items()}
    expected = train(distrain, optimizer, params, data[20:])[0]
    # into the same optimizer, after restoring the weights it had
    for key, value in params.items():
        value.data = distrain.tensor(saved_weights[key])
    optimizer.load_state_dict(saved_state)
    np.testing.assert_array_equal(train(distrain, optimizer, params, data[20:])[0], expected)
    # into a freshly constructed optimizer over fresh parameters
    fresh_params = make_params(distrain, saved_weights)
    fresh = build(distrain, name, fresh_params, {}, packed=load_packed)
    fresh.load_state_dict(saved_state)
    assert fresh.param_groups[0]["lr"] == kwargs["lr"]
    np.testing.assert_array_equal(train(distrain, fresh, fresh_params, data[20:])[0], expected)


def test_loaded_state_of_packed_parameters_lives_in_the_flat_state():
    params, optimizer = trained("Adam", {}, True)
    fresh_params = make_params(distrain, initial_weights(np.float64))
    fresh = build(distrain, "Adam", fresh_params, {})
    fresh.load_state_dict(optimizer.state_dict())
    (flat_state,) = fresh._flat_state.values()
    for name, param in fresh_params.items():
        assert np.shares_memory(fresh.state[param]["exp_avg"]._data, flat_state["exp_avg"])
        np.testing.assert_array_equal(fresh.state[param]["exp_avg"]._data,
                                      optimizer.state[params[name]]["exp_avg"]._data)


def test_load_state_dict_errors_name_the_mismatch():
    _params, optimizer = trained("Adam", {}, True)
    state = optimizer.state_dict()
    two_groups = build(distrain, "Adam", make_params(distrain, initial_weights(np.float64)), {},
                       groups=lambda p: [{"params": [p["w1"], p["b1"]]}, {"params": [p["w2"], p["b2"]]}])
    with pytest.raises(OptimizerError, match="1 parameter group.*this optimizer has 2"):
        two_groups.load_state_dict(state)
    fewer = distrain.optim.Adam(list(make_params(distrain, initial_weights(np.float64)).values())[:3])
    with pytest.raises(OptimizerError, match="group 0 of the loaded state dict has 4 parameters.*has 3"):
        fewer.load_state_dict(state)
    swapped = dict(state, state={0: state["state"][1], 1: state["state"][0]})
    with pytest.raises(OptimizerError, match=r"'exp_avg' of parameter 0.*shape \(7,\).*shape \(5, 7\)"):
        optimizer.load_state_dict(swapped)
    with pytest.raises(OptimizerError, match="expects the dict returned by Optimizer.state_dict"):
        optimizer.load_state_dict({"state": {}})


def test_load_state_dict_drops_state_of_parameters_the_dict_has_none_for():
    _params, optimizer = trained("Adam", {}, True)
    empty = build(distrain, "Adam", make_params(distrain, initial_weights(np.float64)), {"lr": 0.5}).state_dict()
    optimizer.load_state_dict(empty)
    assert not any(optimizer.state.values()) and optimizer.param_groups[0]["lr"] == 0.5


# -- skipping ----------------------------------------------------------------------------------
@pytest.mark.parametrize("packed", [True, False])
def test_frozen_and_gradless_parameters_are_skipped_like_torch(packed):
    weights, data = initial_weights(np.float64), batches(np.float64, 10)
    results = []
    for lib in (distrain, torch):
        params = make_params(lib, weights, frozen=("b1",))
        params["unused"] = make_params(lib, {"unused": np.ones(4)})["unused"]
        optimizer = build(lib, "Adam", params, {"lr": 0.01}, packed=packed if lib is distrain else None)
        results.append((train(lib, optimizer, params, data)[0], optimizer, params))
    (ours, optimizer, params), (theirs, _, _) = results
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(params["b1"].detach().numpy(), weights["b1"])
    assert params["b1"] not in optimizer.state and params["unused"] not in optimizer.state


# -- zero_grad ---------------------------------------------------------------------------------
def test_zero_grad_sets_to_none_or_zeroes_in_place():
    params, optimizer = trained("SGD", {}, True, steps=1)
    grads = {key: value.grad for key, value in params.items()}
    optimizer.zero_grad(set_to_none=False)
    for key, value in params.items():
        assert value.grad is grads[key] and value.grad is value._flat_grad  # still the flat view
        assert not np.any(value.grad.numpy())
    optimizer.zero_grad()
    assert all(value.grad is None for value in params.values())


# -- packing ---------------------------------------------------------------------------------
def test_parameters_are_packed_and_plain_tensors_are_not():
    weight = distrain.nn.Parameter(distrain.randn(3, 2))
    plain = distrain.randn(2, requires_grad=True)
    optimizer = distrain.optim.Adam([weight, plain], lr=0.1)
    assert weight._flat is not None and plain._flat is None
    (weight @ distrain.ones(2) + plain.sum()).sum().backward()
    before = plain.detach().numpy().copy()
    optimizer.step()
    assert not np.array_equal(plain.detach().numpy(), before)
    assert optimizer.state[weight]["exp_avg"]._data.base is not None  # a view of the flat state
    unpacked = distrain.nn.Parameter(distrain.randn(3))
    distrain.optim.SGD([unpacked], packed=False)
    assert unpacked._flat is None


def test_step_bumps_the_parameters_version():
    params, optimizer = trained("SGD", {}, True, steps=1)
    versions = [p._version for p in params.values()]
    optimizer.step()
    assert [p._version for p in params.values()] == [v + 1 for v in versions]


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs, message", [
    ("SGD", {"lr": -0.1}, "Invalid learning rate: -0.1"),
    ("SGD", {"momentum": -0.5}, "Invalid momentum value"),
    ("SGD", {"weight_decay": -1.0}, "Invalid weight_decay value"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "Nesterov momentum requires"),
    ("Adam", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ("AdamW", {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1"),
    ("Adam", {"eps": -1e-8}, "Invalid epsilon value"),
    ("Adagrad", {"lr_decay": -1.0}, "Invalid lr_decay value"),
    ("Adagrad", {"initial_accumulator_value": -1.0}, "Invalid initial_accumulator_value"),
    ("RMSprop", {"alpha": -0.9}, "Invalid alpha value"),
])
def test_bad_hyperparameters_raise(name, kwargs, message):
    with pytest.raises(OptimizerError, match=message):
        getattr(distrain.optim, name)([distrain.nn.Parameter(distrain.randn(2))], **kwargs)


def test_bad_hyperparameter_in_a_group_names_the_group():
    with pytest.raises(OptimizerError, match=r"Invalid learning rate: -1.0 \(param group 1\)"):
        distrain.optim.SGD([{"params": [distrain.randn(2, requires_grad=True)]},
                            {"params": [distrain.randn(2, requires_grad=True)], "lr": -1.0}])


def test_bad_parameters_raise_with_their_index_and_shape():
    good = distrain.randn(2, requires_grad=True)
    with pytest.raises(TypeError, match="parameter 1 .*is a ndarray"):
        distrain.optim.SGD([good, np.zeros(3)])
    with pytest.raises(ValueError, match=r"(?i)non-leaf Tensor: parameter 1 of param group 0 \(shape \(2,\)\).*'MulBackward0'"):
        distrain.optim.SGD([good, good * 2])
    with pytest.raises(TypeError, match=r"parameter 0 .*shape \(3,\).*dtype distrain.int64"):
        distrain.optim.Adam([distrain.tensor(np.arange(3))])
    with pytest.raises(ValueError, match="empty parameter list"):
        distrain.optim.Adam([])
    with pytest.raises(TypeError, match="single Tensor"):
        distrain.optim.Adam(good)
    with pytest.raises(TypeError, match="not a set"):
        distrain.optim.Adam({good})
    with pytest.raises(ValueError, match="parameter 1 .*same tensor as parameter 0"):
        distrain.optim.Adam([good, good])


def test_add_param_group_refuses_a_parameter_already_in_a_group():
    first, second = distrain.randn(2, requires_grad=True), distrain.randn(3, requires_grad=True)
    optimizer = distrain.optim.SGD([first], lr=0.1)
    optimizer.add_param_group({"params": second, "lr": 0.2})
    assert optimizer.param_groups[1]["lr"] == 0.2 and optimizer.param_groups[1]["momentum"] == 0.0
    with pytest.raises(ValueError, match=r"parameter 0 of param group 2 \(shape \(2,\)\) is already in param group 0"):
        optimizer.add_param_group({"params": [first]})
    with pytest.raises(distrain.DistrainError):
        optimizer.add_param_group({"params": [], "lr": 0.1})


def test_load_state_dict_checks_the_loaded_hyperparameters():
    params, optimizer = trained("SGD", {"momentum": 0.9}, True)
    state = copy.deepcopy(optimizer.state_dict())
    state["param_groups"][0]["lr"] = -1.0
    with pytest.raises(OptimizerError, match=r"Invalid learning rate: -1.0 \(param group 0 of the loaded state dict"):
        optimizer.load_state_dict(state)
    assert optimizer.param_groups[0]["lr"] == 1e-3 and optimizer.state[params["w1"]]["momentum_buffer"] is not None
