"""Matrix products, linear and convolution refuse mixed dtypes, as PyTorch does.

NumPy silently computes float32 weights times a float64 (or int64) input in float64; PyTorch
raises "expected both to have the same dtype". distrain raises a DTypeError naming the op and
both dtypes. The oracle decides: for every op and every pair of dtypes, distrain refuses
exactly when PyTorch does and otherwise gives PyTorch's dtype and values. Elementwise ops keep
PyTorch's type promotion (float32 + float64 is float64).
"""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import distrain
import distrain.nn.functional as F
from distrain.errors import DistrainError, DTypeError

from .oracle import to_distrain, to_numpy, to_torch

DTYPES = [np.float32, np.float64, np.int64, np.float16]
RNG = np.random.default_rng(7)


def values(shape, dtype):
    return (RNG.integers(-3, 4, shape) if np.dtype(dtype).kind == "i" else RNG.standard_normal(shape)).astype(dtype)


# op name -> (function of (lib, functional, *tensors), shapes of its operands)
OPS = {
    "matmul": (lambda lib, fn, a, b: lib.matmul(a, b), [(2, 3), (3, 4)]),
    "matmul batched": (lambda lib, fn, a, b: a @ b, [(5, 2, 3), (3, 4)]),
    "matmul vector": (lambda lib, fn, a, b: a @ b, [(3,), (3, 4)]),
    "mm": (lambda lib, fn, a, b: lib.mm(a, b), [(2, 3), (3, 4)]),
    "Tensor.mm": (lambda lib, fn, a, b: a.mm(b), [(2, 3), (3, 4)]),
    "bmm": (lambda lib, fn, a, b: lib.bmm(a, b), [(2, 2, 3), (2, 3, 4)]),
    "dot": (lambda lib, fn, a, b: lib.dot(a, b), [(3,), (3,)]),
    "linear": (lambda lib, fn, x, w: fn.linear(x, w), [(4, 3), (2, 3)]),
    "linear bias": (lambda lib, fn, x, w, b: fn.linear(x, w, b), [(4, 3), (2, 3), (2,)]),
    "conv2d": (lambda lib, fn, x, w: fn.conv2d(x, w), [(1, 2, 5, 5), (3, 2, 3, 3)]),
    "conv2d bias": (lambda lib, fn, x, w, b: fn.conv2d(x, w, b, padding=1), [(1, 2, 5, 5), (3, 2, 3, 3), (3,)]),
}
OP_NAMES = {"matmul batched": "matmul", "matmul vector": "matmul", "Tensor.mm": "mm", "linear bias": "linear",
            "conv2d bias": "conv2d"}


def dtype_combinations(arity):
    return [combo for combo in itertools.product(DTYPES, repeat=arity)]


CASES = [(name, combo) for name, (_, shapes) in OPS.items() for combo in dtype_combinations(len(shapes))]


@pytest.mark.parametrize("name, dtypes", CASES, ids=[f"{name}-{'-'.join(np.dtype(d).name for d in combo)}"
                                                     for name, combo in CASES])
def test_mixed_dtypes_are_refused_exactly_when_pytorch_refuses(name, dtypes):
    fn, shapes = OPS[name]
    arrays = [values(shape, dtype) for shape, dtype in zip(shapes, dtypes)]
    try:
        expected = fn(torch, TF, *[to_torch(array) for array in arrays])
    except (RuntimeError, NotImplementedError) as error:
        expected = error
    mixed = len({np.dtype(dtype) for dtype in dtypes}) > 1
    if mixed:
        assert isinstance(expected, Exception), f"PyTorch accepted {name} of {dtypes}"  # the rule being matched
        with pytest.raises(DTypeError) as caught:
            fn(distrain, F, *[to_distrain(array) for array in arrays])
        message = str(caught.value)
        assert message.startswith(f"{OP_NAMES.get(name, name)}:"), message
        for dtype in set(dtypes):
            assert np.dtype(dtype).name in message, message
        return
    if isinstance(expected, Exception):  # e.g. PyTorch has no float16 conv on the CPU: nothing to compare
        return
    result = fn(distrain, F, *[to_distrain(array) for array in arrays])
    assert result.dtype == np.dtype(dtypes[0]) and tuple(result.shape) == tuple(expected.shape)
    tolerance = {np.dtype(np.float16): 2e-2, np.dtype(np.float32): 1e-5}.get(np.dtype(dtypes[0]), 1e-12)
    np.testing.assert_allclose(to_numpy(result).astype(np.float64), to_numpy(expected).astype(np.float64),
                               rtol=tolerance, atol=tolerance)


def test_a_float32_model_refuses_float64_and_int64_input_naming_both_dtypes():
    model = distrain.nn.Sequential(distrain.nn.Linear(3, 2))
    for dtype in (np.float64, np.int64):
        with pytest.raises(DTypeError, match=rf"linear: .*input {np.dtype(dtype).name} of shape \(4, 3\), "
                                             r"weight float32 of shape \(2, 3\)"):
            model(to_distrain(values((4, 3), dtype)))
    conv = distrain.nn.Conv2d(2, 3, 3)
    with pytest.raises(DTypeError, match=r"conv2d: .*input float64.*weight float32"):
        conv(distrain.zeros(1, 2, 5, 5, dtype=distrain.float64))
    assert model(distrain.zeros(4, 3)).dtype == distrain.float32  # float32 input is fine
    assert issubclass(DTypeError, DistrainError) and issubclass(DTypeError, TypeError)


def test_the_refusal_comes_before_any_float64_arithmetic_in_backward_too():
    """A graph built from same-dtype operands backpropagates in that dtype (no hidden upcast)."""
    x = distrain.randn(4, 3, requires_grad=True)
    w = distrain.randn(2, 3, requires_grad=True)
    (F.linear(x, w) @ distrain.randn(2, 5)).sum().backward()
    assert x.grad.dtype == w.grad.dtype == distrain.float32


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "where"])
@pytest.mark.parametrize("left, right", [(np.float32, np.float64), (np.int64, np.float32), (np.float16, np.float32)])
def test_elementwise_ops_keep_pytorchs_type_promotion(op, left, right):
    a, b = values((2, 3), left), values((2, 3), right) + 5  # + 5: no division by zero
    if op == "where":
        ours = distrain.where(distrain.tensor(a > 0), to_distrain(a), to_distrain(b))
        theirs = torch.where(torch.tensor(a > 0), to_torch(a), to_torch(b))
    else:
        ours = getattr(distrain, op)(to_distrain(a), to_distrain(b))
        theirs = getattr(torch, op)(to_torch(a), to_torch(b))
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "distrain.")
    np.testing.assert_allclose(to_numpy(ours).astype(np.float64), to_numpy(theirs).astype(np.float64), rtol=2e-3)
