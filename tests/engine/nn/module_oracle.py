"""Helpers for the nn tests: a distrain layer beside its torch twin, holding the same weights.

    d_layer, t_layer = twins(nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3), dtype, device)
    check_module_against_torch(d_layer, t_layer, [x], dtype, device)

`twins` casts the torch layer to `dtype`, moves the distrain layer to `device` and `dtype`,
and copies torch's (randomly initialised) state into distrain through `load_state_dict`.
`check_module_against_torch` then runs both forward, compares the outputs, backpropagates
one random upstream gradient through both, and compares the input's gradient, every
parameter's gradient (by name) and every buffer.
"""
from __future__ import annotations

import numpy as np
import torch

import distrain

from ..oracle import _flatten, assert_close, to_distrain, to_numpy, to_torch, torch_dtype_of

DISTRAIN_DTYPES = {np.dtype(np.float32): distrain.float32, np.dtype(np.float64): distrain.float64}


def twins(d_module, t_module, dtype=np.float64, device="cpu"):
    """Give `d_module` the state of `t_module` (both cast to `dtype`); returns (d_module, t_module)."""
    t_module = t_module.to(torch_dtype_of(dtype))
    d_module = d_module.to(device, DISTRAIN_DTYPES[np.dtype(dtype)])
    state = {name: to_distrain(to_numpy(value), device) for name, value in t_module.state_dict().items()}
    d_module.load_state_dict(state)
    assert_same_state(d_module, t_module)
    return d_module, t_module


def assert_same_state(d_module, t_module, rtol=None, atol=None, what=""):
    """Same parameter and buffer names, in the same order, with the same values."""
    d_params = dict(d_module.named_parameters())
    t_params = dict(t_module.named_parameters())
    assert list(d_params) == list(t_params), f"{what}parameter names {list(d_params)} != torch's {list(t_params)}"
    for name in t_params:
        assert_close(d_params[name], t_params[name].detach(), rtol, atol, what=f"{what}parameter {name}")
    d_buffers = dict(d_module.named_buffers())
    t_buffers = dict(t_module.named_buffers())
    assert list(d_buffers) == list(t_buffers), f"{what}buffer names {list(d_buffers)} != torch's {list(t_buffers)}"
    for name in t_buffers:
        assert_close(d_buffers[name], t_buffers[name], rtol, atol, what=f"{what}buffer {name}")


def check_module_against_torch(d_module, t_module, arrays, dtype=np.float64, device="cpu", *, rtol=None, atol=None,
                               grad_rtol=None, grad_atol=None, seed=0, backward=True, requires_grad=None):
    """Forward both modules on the same inputs, compare outputs; backward one upstream gradient, compare grads.

    Floating arrays are cast to `dtype` and require grad (unless `requires_grad`, one bool per
    array, says otherwise); integer arrays (class ids) stay as they are.
    Returns (distrain outputs, torch outputs) as flat lists.
    """
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    flags = [a.dtype.kind == "f" for a in arrays] if requires_grad is None else list(requires_grad)
    d_in = [to_distrain(a, device, f) for a, f in zip(arrays, flags)]
    t_in = [to_torch(a, f) for a, f in zip(arrays, flags)]
    d_out = _flatten(d_module(*d_in))
    t_out = _flatten(t_module(*t_in))
    assert len(d_out) == len(t_out), f"module returned {len(d_out)} outputs, torch {len(t_out)}"
    for i, (d, t) in enumerate(zip(d_out, t_out)):
        assert_close(d, t, rtol, atol, what=f"output {i}")
        assert bool(d.requires_grad) == bool(t.requires_grad), (
            f"output {i}: requires_grad={d.requires_grad}, torch says {t.requires_grad}")
    if backward:
        rng = np.random.default_rng(seed)
        d_roots, d_grads, t_roots, t_grads = [], [], [], []
        for d, t in zip(d_out, t_out):
            if t.requires_grad:
                g = rng.standard_normal(tuple(t.shape)).astype(to_numpy(t).dtype)
                d_roots.append(d)
                d_grads.append(to_distrain(g, device))
                t_roots.append(t)
                t_grads.append(to_torch(g))
        if t_roots:
            distrain.autograd.backward(d_roots, d_grads)
            torch.autograd.backward(t_roots, t_grads)
        grad_rtol = rtol if grad_rtol is None else grad_rtol
        grad_atol = atol if grad_atol is None else grad_atol
        for i, (d, t) in enumerate(zip(d_in, t_in)):
            if t.requires_grad:
                assert d.grad is not None, f"input {i}: .grad is None, torch has one"
                assert_close(d.grad, t.grad, grad_rtol, grad_atol, what=f"grad of input {i}")
        assert_same_grads(d_module, t_module, grad_rtol, grad_atol)
    assert_same_state(d_module, t_module, rtol, atol, what="after forward: ")
    return d_out, t_out


def assert_same_grads(d_module, t_module, rtol=None, atol=None):
    """Every parameter's .grad equals torch's (both None, or equal values)."""
    t_params = dict(t_module.named_parameters())
    for name, d_param in d_module.named_parameters():
        t_grad = t_params[name].grad
        if t_grad is None:
            assert d_param.grad is None or not np.any(to_numpy(d_param.grad)), f"grad of {name}: torch has none"
            continue
        assert d_param.grad is not None, f"grad of parameter {name} is None, torch has one"
        assert_close(d_param.grad, t_grad, rtol, atol, what=f"grad of parameter {name}")


def random_input(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(tuple(shape)) * scale
