"""Shared helpers for the op tests: PyTorch as the numerical oracle, finite differences as the second.

The typical test builds NumPy inputs, then calls

    check_op_against_torch(lambda x, y: x * y, lambda x, y: x * y, [a, b], dtype, device)

which runs the op forward in distrain (on `device`) and in PyTorch (CPU) on the same numbers,
compares every output (values, shape, dtype, requires_grad), then backpropagates the same random
upstream gradient through both and compares every input's `.grad`.

`check_finite_differences(fn, arrays, device)` runs `distrain.autograd.gradcheck` in float64.

Most op lambdas are written once as `f(lib, *tensors)` with `lib` either `distrain` or `torch`,
since the two share names; `pair(f)` turns one such function into the (distrain_fn, torch_fn)
pair the checker takes.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

import distrain

# Tolerances: float64 is compared tightly; float32 allows for a different summation order.
TOLERANCES = {
    np.dtype(np.float64): (1e-7, 1e-10),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float16): (2e-3, 1e-3),
}

FLOAT_DTYPES = [np.float64, np.float32]

# Hypothesis settings shared by the property tests: small, deterministic, no on-disk database.
HYPOTHESIS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_TORCH_DTYPES = {
    np.dtype(np.float64): torch.float64,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.bool_): torch.bool,
}


def pair(f):
    """`f(lib, *tensors)` -> (distrain version, torch version)."""
    return functools.partial(f, distrain), functools.partial(f, torch)


# ---------------------------------------------------------------------------------------------
# conversions


def to_torch(array, requires_grad=False):
    """A CPU torch tensor holding a copy of `array` (same dtype)."""
    t = torch.tensor(np.array(array, copy=True))
    if requires_grad:
        t.requires_grad_(True)
    return t


def to_distrain(array, device="cpu", requires_grad=False):
    """A distrain tensor on `device` holding a copy of `array` (same dtype)."""
    return distrain.tensor(np.array(array, copy=True), device=device, requires_grad=requires_grad)


def to_numpy(t):
    """NumPy copy of a distrain tensor (any device) or a torch tensor."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy(force=True)
    return np.asarray(t.detach().cpu().numpy())


def torch_dtype_of(np_dtype):
    return _TORCH_DTYPES[np.dtype(np_dtype)]


def tolerances(dtype, rtol=None, atol=None):
    default_rtol, default_atol = TOLERANCES.get(np.dtype(dtype), (1e-5, 1e-6))
    return (default_rtol if rtol is None else rtol), (default_atol if atol is None else atol)


# ---------------------------------------------------------------------------------------------
# comparisons


def assert_close(actual, expected, rtol=None, atol=None, check_dtype=True, what="value"):
    """Compare a distrain tensor with a torch tensor: shape, dtype and values (NaN == NaN)."""
    assert isinstance(actual, distrain.Tensor), f"{what}: expected a distrain.Tensor, got {type(actual)!r}"
    a = to_numpy(actual)
    e = to_numpy(expected)
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{what}: shape {tuple(actual.shape)} != torch's {tuple(expected.shape)}"
    )
    assert a.shape == e.shape, f"{what}: numpy() shape {a.shape} != torch's {e.shape}"
    if check_dtype:
        assert np.dtype(actual.dtype) == e.dtype, f"{what}: dtype {actual.dtype} != torch's {expected.dtype}"
    if e.dtype.kind in "biu":
        np.testing.assert_array_equal(a, e, err_msg=what)
        return
    rtol, atol = tolerances(e.dtype, rtol, atol)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def _flatten(out):
    """Outputs of an op as a flat list of tensors (tuples, lists and namedtuples unpacked)."""
    if isinstance(out, (tuple, list)):
        flat = []
        for item in out:
            flat.extend(_flatten(item))
        return flat
    return [out]


def _is_float(np_dtype):
    return np.dtype(np_dtype).kind == "f"


def check_op_against_torch(
    distrain_fn,
    torch_fn,
    arrays,
    dtype=np.float64,
    device="cpu",
    *,
    transforms=None,
    requires_grad=None,
    grad=True,
    rtol=None,
    atol=None,
    grad_rtol=None,
    grad_atol=None,
    seed=0,
):
    """Run an op in distrain and in torch on the same inputs; compare outputs, then gradients.

    arrays: NumPy arrays. Floating arrays are cast to `dtype` and become leaves with
        requires_grad=True (unless `requires_grad` — one bool per array — says otherwise);
        integer and bool arrays are passed as plain tensors.
    transforms: optional list (one per array, None for none) of callables applied to the leaf
        before the op, on both sides alike, e.g. `lambda t: t.transpose(0, 1)` or
        `lambda t: t[::2]` to feed non-contiguous views; gradients still land on the leaves.
    dtype: the floating dtype to run in, or a list of them (e.g. FLOAT_DTYPES) to run in each.
    Returns (distrain outputs, torch outputs), flattened into lists (of the last dtype run).
    """
    if isinstance(dtype, (list, tuple)):
        result = None
        for one in dtype:
            result = check_op_against_torch(
                distrain_fn, torch_fn, arrays, one, device, transforms=transforms, requires_grad=requires_grad,
                grad=grad, rtol=rtol, atol=atol, grad_rtol=grad_rtol, grad_atol=grad_atol, seed=seed,
            )
        return result
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a.astype(dtype) if _is_float(a.dtype) else a for a in arrays]
    if requires_grad is None:
        requires_grad = [_is_float(a.dtype) for a in arrays]
    if transforms is None:
        transforms = [None] * len(arrays)

    d_leaves = [to_distrain(a, device, rg) for a, rg in zip(arrays, requires_grad)]
    t_leaves = [to_torch(a, rg) for a, rg in zip(arrays, requires_grad)]
    d_inputs = [tf(x) if tf is not None else x for x, tf in zip(d_leaves, transforms)]
    t_inputs = [tf(x) if tf is not None else x for x, tf in zip(t_leaves, transforms)]

    d_out = _flatten(distrain_fn(*d_inputs))
    t_out = _flatten(torch_fn(*t_inputs))
    assert len(d_out) == len(t_out), f"op returned {len(d_out)} outputs, torch {len(t_out)}"
    for i, (d, t) in enumerate(zip(d_out, t_out)):
        assert_close(d, t, rtol, atol, what=f"output {i}")
        assert str(d.device) == device, f"output {i} on {d.device}, inputs on {device}"
        assert bool(d.requires_grad) == bool(t.requires_grad), (
            f"output {i}: requires_grad={d.requires_grad}, torch says {t.requires_grad}"
        )

    if not grad:
        return d_out, t_out

    rng = np.random.default_rng(seed)
    d_roots, d_grads, t_roots, t_grads = [], [], [], []
    for d, t in zip(d_out, t_out):
        if not t.requires_grad:
            continue
        g = rng.standard_normal(tuple(t.shape)).astype(to_numpy(t).dtype)
        d_roots.append(d)
        d_grads.append(to_distrain(g, device))
        t_roots.append(t)
        t_grads.append(to_torch(g))
    if not t_roots:
        return d_out, t_out
    if len(d_roots) == 1:
        d_roots[0].backward(d_grads[0])
    else:
        distrain.autograd.backward(d_roots, d_grads)
    torch.autograd.backward(t_roots, t_grads)

    grad_rtol = rtol if grad_rtol is None else grad_rtol
    grad_atol = atol if grad_atol is None else grad_atol
    for i, (d, t) in enumerate(zip(d_leaves, t_leaves)):
        if not t.requires_grad:
            continue
        if t.grad is None:
            assert d.grad is None or not np.any(to_numpy(d.grad)), f"input {i}: grad should be None/zero"
            continue
        assert d.grad is not None, f"input {i}: .grad is None, torch has a gradient"
        assert_close(d.grad, t.grad, grad_rtol, grad_atol, what=f"grad of input {i}")
    return d_out, t_out


def check_finite_differences(distrain_fn, arrays, device="cpu", *, requires_grad=None, max_outputs=16,
                             **gradcheck_kwargs):
    """`distrain.autograd.gradcheck` on float64 copies of `arrays` (non-float arrays stay constant).

    gradcheck differentiates every output element separately; when the op has more than
    `max_outputs` output elements, its outputs are folded into one scalar with fixed random
    weights (sum(out_i * w_i)), which still checks the full vector-Jacobian product.
    """
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a.astype(np.float64) if _is_float(a.dtype) else a for a in arrays]
    if requires_grad is None:
        requires_grad = [_is_float(a.dtype) for a in arrays]
    inputs = tuple(to_distrain(a, device, rg) for a, rg in zip(arrays, requires_grad))

    fn = distrain_fn
    outputs = _flatten(distrain_fn(*inputs))
    differentiable = [i for i, o in enumerate(outputs) if o.requires_grad]
    if sum(int(np.prod(outputs[i].shape)) for i in differentiable) > max_outputs:
        rng = np.random.default_rng(12345)
        weights = {i: to_distrain(rng.uniform(0.5, 1.5, size=tuple(outputs[i].shape)), device) for i in differentiable}

        def fn(*xs):  # noqa: F811
            outs = _flatten(distrain_fn(*xs))
            total = None
            for i in differentiable:
                term = (outs[i] * weights[i]).sum()
                total = term if total is None else total + term
            return total

    assert distrain.autograd.gradcheck(fn, inputs, **gradcheck_kwargs) is True


def assert_shape_error(fn, *shapes):
    """`fn()` raises distrain.ShapeError whose message names every shape in `shapes` as a tuple."""
    with pytest.raises(distrain.ShapeError) as info:
        fn()
    message = str(info.value)
    for shape in shapes:
        assert str(tuple(shape)) in message, f"message {message!r} does not name shape {tuple(shape)}"
    return info.value


# ---------------------------------------------------------------------------------------------
# data


def random_array(rng, shape, domain="any"):
    """Float64 data for an op's domain, kept away from points where the op is not differentiable."""
    shape = tuple(shape)
    if domain == "any":
        return rng.standard_normal(shape)
    if domain == "positive":
        return rng.uniform(0.5, 2.0, size=shape)
    if domain == "nonzero":
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 2.0, size=shape)
    if domain == "unit":
        return rng.uniform(-0.9, 0.9, size=shape)
    raise ValueError(domain)


def check_second_order_against_torch(distrain_fn, torch_fn, arrays, dtype=np.float64, device="cpu", *, rtol=None,
                                     atol=None, seed=0):
    """Second derivatives: g = grad(f(x), x, v, create_graph=True), then backward of sum(g * w).

    Compares the first-order grads g and the resulting second-order .grad of every float input.
    """
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a.astype(dtype) if _is_float(a.dtype) else a for a in arrays]
    flags = [_is_float(a.dtype) for a in arrays]
    d_in = [to_distrain(a, device, f) for a, f in zip(arrays, flags)]
    t_in = [to_torch(a, f) for a, f in zip(arrays, flags)]
    d_out, t_out = distrain_fn(*d_in), torch_fn(*t_in)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(tuple(t_out.shape)).astype(to_numpy(t_out).dtype)
    d_leaves = [x for x, f in zip(d_in, flags) if f]
    t_leaves = [x for x, f in zip(t_in, flags) if f]
    d_g = distrain.autograd.grad(d_out, d_leaves, to_distrain(v, device), create_graph=True)
    t_g = torch.autograd.grad(t_out, t_leaves, to_torch(v), create_graph=True)
    d_total, t_total = None, None
    for i, (dg, tg) in enumerate(zip(d_g, t_g)):
        assert_close(dg, tg, rtol, atol, what=f"first-order grad {i}")
        w = rng.standard_normal(tuple(tg.shape)).astype(to_numpy(tg).dtype)
        d_term, t_term = (dg * to_distrain(w, device)).sum(), (tg * to_torch(w)).sum()
        d_total = d_term if d_total is None else d_total + d_term
        t_total = t_term if t_total is None else t_total + t_term
    if not d_total.requires_grad or not t_total.requires_grad:
        # the second derivative is identically zero (a linear op, or abs/relu: piecewise linear);
        # the two libraries may or may not record a graph for it, but it must be zero in both
        for total, leaves, lib in ((d_total, d_leaves, "distrain"), (t_total, t_leaves, "torch")):
            if total.requires_grad:
                total.backward()
                for i, x in enumerate(leaves):
                    assert x.grad is None or not np.any(to_numpy(x.grad)), f"{lib}: second-order grad {i} not zero"
        return
    d_total.backward()
    t_total.backward()
    for i, (d, t) in enumerate(zip(d_leaves, t_leaves)):
        if t.grad is None:
            assert d.grad is None or not np.any(to_numpy(d.grad)), f"second-order grad {i} should be None/zero"
            continue
        assert d.grad is not None, f"second-order grad of input {i} is None, torch has one"
        assert_close(d.grad, t.grad, rtol, atol, what=f"second-order grad of input {i}")
