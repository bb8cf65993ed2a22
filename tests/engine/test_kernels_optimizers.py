"""The optimizers' compiled updates (kernels/adam.py, kernels/sgd.py): bit for bit their array code, and PyTorch.

The choice of path is monkeypatched, so the compiled loop and its NumPy reference (the
optimizer's array code in optim/adam.py, optim/sgd.py) run on every variant of the rule:
Adam's L2 or decoupled weight decay, maximize, amsgrad; SGD's momentum (the first step
and the next), dampening, Nesterov, weight decay, maximize. The gradients come from
backward of sum(param * c), so they are exactly c in both frameworks.
"""
import numpy as np
import pytest
import torch

import distrain
from distrain.engine import kernels
from distrain.engine.kernels.adam import adam_update
from distrain.engine.kernels.sgd import sgd_update
from distrain.engine.optim import adam as adam_module
from distrain.engine.optim import sgd as sgd_module

SHAPES = [(37, 29), (29,), (3,)]  # packed: one chunk of 1105 values, not a multiple of any vector width
STEPS = 5
CONFIGS = [
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}),
    ("Adam", {"lr": 0.01, "maximize": True}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "maximize": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.01, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}" for name, kwargs in CONFIGS]


def _data(dtype, special=False):
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    grads = [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(STEPS)]
    if special:  # zeros of both signs, an underflowing square, a huge value; an inf, then a NaN, in the bias
        for number, step in enumerate(grads):
            flat = step[0].reshape(-1)
            flat[rng.integers(0, flat.size, 40)] = -0.0
            flat[rng.integers(0, flat.size, 40)] = 0.0
            flat[rng.integers(0, flat.size, 10)] = 1e-30
            flat[rng.integers(0, flat.size, 10)] = 1e15
            step[1][[3, 7][number % 2]] = [np.inf, np.nan][number % 2] if number >= 2 else 0.0
    return weights, grads


def _train(lib, name, kwargs, weights, grads, packed=True):
    """STEPS updates of `lib.optim.<name>` with the given gradients; the parameters and state after each step."""
    if lib is torch:
        params = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
        optimizer = getattr(torch.optim, name)(params, **kwargs)
    else:
        params = [distrain.nn.Parameter(distrain.tensor(w.copy())) for w in weights]
        optimizer = getattr(distrain.optim, name)(params, **kwargs, packed=packed)
    rows = []
    for step in grads:
        optimizer.zero_grad()
        sum(((p * lib.tensor(g)).sum() for p, g in zip(params, step)), lib.tensor(0.0, dtype=params[0].dtype)) \
            .backward()
        optimizer.step()
        values = [p.detach().numpy().copy() for p in params]
        values += [np.asarray(value.detach().numpy() if hasattr(value, "detach") else value).copy()
                   for p in params for key, value in sorted(optimizer.state[p].items()) if key != "step"]
        rows.append(values)
    return rows


@pytest.fixture
def compiled_calls(monkeypatch):
    """Whether each update ran the compiled loop (True) or fell back to the optimizer's array code (False)."""
    calls = []

    def recording(kernel):
        def record(*args, **kwargs):
            calls.append(kernel(*args, **kwargs))
            return calls[-1]
        return record

    monkeypatch.setattr(adam_module, "adam_update", recording(adam_update))
    monkeypatch.setattr(sgd_module, "sgd_update", recording(sgd_update))
    return calls


@pytest.mark.parametrize("special", [False, True], ids=["normal", "special-values"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=IDS)
def test_paths_agree_bit_for_bit(name, kwargs, dtype, special, compiled_calls, monkeypatch):
    weights, grads = _data(dtype, special)
    results = {}
    for path in ("numba", "numpy"):
        monkeypatch.setattr(kernels, "_path", path)
        compiled_calls.clear()
        with np.errstate(all="ignore"):  # inf - inf in the reference's passes and in the loss
            results[path] = _train(distrain, name, kwargs, weights, grads)
        assert compiled_calls == [path == "numba"] * STEPS
    for compiled, reference in zip(results["numba"], results["numpy"]):
        for ours, theirs in zip(compiled, reference):
            assert ours.dtype == theirs.dtype == dtype
            nan = np.isnan(theirs)  # NaNs in the same places (their sign bits depend on operand order)
            assert np.array_equal(np.isnan(ours), nan)
            assert np.array_equal(ours[~nan].view(np.uint8), theirs[~nan].view(np.uint8))
    assert np.isnan(results["numba"][-1][1]).any() == special  # the bias met the NaN


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "per-parameter"])
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=IDS)
def test_compiled_updates_follow_torch(name, kwargs, packed, compiled_calls, monkeypatch):
    monkeypatch.setattr(kernels, "_path", "numba")
    weights, grads = _data(np.float32)
    ours = _train(distrain, name, kwargs, weights, grads, packed)
    assert compiled_calls and all(compiled_calls)
    theirs = _train(torch, name, kwargs, weights, grads)
    for step, (our_row, their_row) in enumerate(zip(ours, theirs), start=1):
        for our_values, their_values in zip(our_row, their_row):
            np.testing.assert_allclose(our_values, their_values, rtol=2e-5, atol=1e-6, err_msg=f"step {step}")


def test_what_the_loops_do_not_cover_takes_the_array_code(compiled_calls, monkeypatch):
    """float16, arrays of mixed dtypes, non-contiguous arrays: False, nothing touched; the rule still runs."""
    monkeypatch.setattr(kernels, "_path", "numba")
    adam = {"step": 1, "lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
            "decoupled_weight_decay": False, "maximize": False}
    sgd = {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "maximize": False,
           "first_step": False}
    half = [np.ones(4, np.float16) for _ in range(4)]
    mixed = [np.ones(4, np.float32), np.ones(4, np.float64), np.ones(4, np.float32), np.ones(4, np.float32)]
    strided = [np.ones(8, np.float32)[::2] for _ in range(4)]
    for arrays in (half, mixed, strided):
        assert adam_update(*arrays, None, **adam) is False
        assert sgd_update(*arrays[:3], **sgd) is False
        assert all(np.array_equal(array, np.ones(4)) for array in arrays)
    for name, expected in (("Adam", 0.9), ("SGD", 0.8)):
        parameter = distrain.nn.Parameter(distrain.tensor(np.ones(4, np.float16)))
        optimizer = getattr(distrain.optim, name)([parameter], lr=0.1)
        (parameter * 2).sum().backward()
        compiled_calls.clear()
        optimizer.step()
        assert compiled_calls == [False]
        np.testing.assert_array_equal(parameter.detach().numpy(), np.full(4, expected, np.float16))
