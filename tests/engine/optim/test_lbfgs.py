"""LBFGS follows PyTorch's trajectory (fixed step and strong-Wolfe line search), on the flat slice and per parameter."""
import copy

import numpy as np
import pytest
import torch

import distrain

from .twin_mlp import batches, build, initial_weights, make_params, train

OptimizerError = distrain.optim.OptimizerError

CONFIGS = [
    {"lr": 0.1, "max_iter": 5},
    {"lr": 1, "max_iter": 10, "history_size": 3, "line_search_fn": "strong_wolfe"},
    {"lr": 0.5, "max_iter": 20, "max_eval": 12, "tolerance_grad": 1e-4, "tolerance_change": 1e-6,
     "line_search_fn": "strong_wolfe"},
    {"lr": 0.2, "max_iter": 4, "history_size": 2},
]
IDS = ["-".join(f"{k}={v}" for k, v in config.items()) for config in CONFIGS]
TOLERANCE = {np.float32: {"rtol": 2e-3, "atol": 2e-4}, np.float64: {"rtol": 1e-8, "atol": 1e-10}}


def run(lib, kwargs, dtype, steps, packed=None, weights=None, loss="mse"):
    params = make_params(lib, weights if weights is not None else initial_weights(dtype))
    optimizer = build(lib, "LBFGS", params, kwargs, packed=packed)
    trajectory, losses = train(lib, optimizer, params, batches(dtype, steps, seed=3)[:1] * steps, loss=loss,
                               closure=True)
    return trajectory, losses, optimizer, params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "per-parameter"])
@pytest.mark.parametrize("kwargs", CONFIGS, ids=IDS)
def test_trajectory_matches_torch(kwargs, packed, dtype):
    """The same batch every step (L-BFGS wants a deterministic loss); steps of up to max_iter iterations.

    float32 runs 3 steps, float64 6: once the loss is nearly flat, float32 rounding (numpy's
    and torch's sums differ in order) decides the line search's branches, and the runs part.
    """
    steps = 3 if dtype == np.float32 else 6
    ours, our_losses, optimizer, _ = run(distrain, kwargs, dtype, steps, packed=packed)
    theirs, their_losses, reference, _ = run(torch, kwargs, dtype, steps)
    np.testing.assert_allclose(ours, theirs, **TOLERANCE[dtype])
    np.testing.assert_allclose(our_losses, their_losses, **TOLERANCE[dtype])
    assert our_losses[-1] < our_losses[0]
    state, expected = next(iter(optimizer.state.values())), next(iter(reference.state.values()))
    assert (state["func_evals"], state["n_iter"]) == (expected["func_evals"], expected["n_iter"])


def test_packed_parameters_are_updated_as_one_slice():
    params = make_params(distrain, initial_weights(np.float64))
    optimizer = build(distrain, "LBFGS", params, {})
    flat, start, stop = optimizer._span()
    assert (start, stop) == (0, 66) and all(p._flat is flat for p in params.values())
    assert build(distrain, "LBFGS", make_params(distrain, initial_weights(np.float64)), {}, packed=False)._span() is None


def test_a_parameter_without_grad_counts_as_zero_gradient_like_torch():
    """b2 is frozen: PyTorch gathers zeros for its gradient and never moves it."""
    weights, kwargs = initial_weights(np.float64), {"max_iter": 5, "line_search_fn": "strong_wolfe"}
    results = []
    for lib in (distrain, torch):
        params = make_params(lib, weights, frozen=("b2",))
        optimizer = build(lib, "LBFGS", list(params.values()) and params, kwargs)
        results.append(train(lib, optimizer, params, batches(np.float64, 1) * 4, closure=True)[0])
    np.testing.assert_allclose(results[0], results[1], **TOLERANCE[np.float64])


def test_quadratic_converges_like_torch():
    """A quadratic (condition number 100): strong Wolfe with a short history reaches torch's point.

    (With condition numbers of 1000 the two runs drift apart by rounding alone: numpy's and
    torch's matrix products round differently, and 50 iterations amplify that.)"""
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    matrix = basis @ np.diag(np.logspace(0, 2, 8)) @ basis.T
    target = rng.standard_normal(8)
    points = []
    for lib in (distrain, torch):
        tensor = torch.tensor if lib is torch else distrain.tensor
        x = tensor(np.zeros(8), requires_grad=True)
        optimizer = lib.optim.LBFGS([x], max_iter=50, history_size=4, line_search_fn="strong_wolfe")

        def closure(lib=lib, x=x, optimizer=optimizer, tensor=tensor):
            optimizer.zero_grad()
            difference = x - tensor(target)
            loss = (difference * (tensor(matrix) @ difference)).sum() * 0.5
            loss.backward()
            return loss

        for _ in range(3):
            optimizer.step(closure)
        points.append(np.array(x.detach().numpy()))
    np.testing.assert_allclose(points[0], points[1], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(points[0], target, atol=1e-5)


def test_state_dict_has_torchs_layout_and_loads_both_ways():
    kwargs = {"max_iter": 4, "history_size": 3, "line_search_fn": "strong_wolfe"}
    _, _, ours, _ = run(distrain, kwargs, np.float64, 3)
    _, _, theirs, their_params = run(torch, kwargs, np.float64, 3)
    our_state, their_state = copy.deepcopy(ours.state_dict()), copy.deepcopy(theirs.state_dict())  # live tensors
    assert list(our_state["state"]) == list(their_state["state"]) == [0]
    assert set(our_state["state"][0]) == set(their_state["state"][0])
    for key, value in their_state["state"][0].items():
        mine = our_state["state"][0][key]
        if isinstance(value, list):
            assert len(mine) == len(value)
            for a, b in zip(mine, value):
                if b is not None:
                    np.testing.assert_allclose(np.asarray(a.numpy() if hasattr(a, "numpy") else a), b.numpy()
                                               if hasattr(b, "numpy") else b, rtol=1e-7, err_msg=key)
        else:
            np.testing.assert_allclose(np.asarray(mine.numpy() if hasattr(mine, "numpy") else mine),
                                       value.numpy() if hasattr(value, "numpy") else value, rtol=1e-7, err_msg=key)
    # torch's state, loaded into a fresh distrain LBFGS, continues like torch (and ours after a round trip)
    data = batches(np.float64, 1, seed=3) * 3
    weights = {key: value.detach().numpy().copy() for key, value in their_params.items()}
    expected = train(torch, theirs, their_params, data, closure=True)[0]
    for state in (copy.deepcopy(their_state), copy.deepcopy(our_state)):
        params = make_params(distrain, weights)
        resumed = build(distrain, "LBFGS", params, kwargs)
        resumed.load_state_dict(state)
        continued = train(distrain, resumed, params, data, closure=True)[0]
        np.testing.assert_allclose(continued, expected, **TOLERANCE[np.float64])


def test_bad_input_raises_naming_the_argument():
    param = distrain.nn.Parameter(distrain.randn(3))
    with pytest.raises(OptimizerError, match="Invalid line_search_fn: 'wolfe'"):
        distrain.optim.LBFGS([param], line_search_fn="wolfe")
    with pytest.raises(OptimizerError, match="Invalid max_iter: 0"):
        distrain.optim.LBFGS([param], max_iter=0)
    with pytest.raises(OptimizerError, match="Invalid history_size: -1"):
        distrain.optim.LBFGS([param], history_size=-1)
    with pytest.raises(OptimizerError, match="Invalid learning rate: -1"):
        distrain.optim.LBFGS([param], lr=-1)
    with pytest.raises(OptimizerError, match="parameter groups"):
        distrain.optim.LBFGS([{"params": [param]}, {"params": [distrain.nn.Parameter(distrain.randn(2))]}])
    with pytest.raises(OptimizerError, match="needs a closure"):
        distrain.optim.LBFGS([param]).step()
