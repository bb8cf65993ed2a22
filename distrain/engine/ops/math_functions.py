"""More elementwise math: rounding, reciprocals, logs and exponentials in other bases, the
trigonometric and hyperbolic functions, atan2, addcmul/addcdiv, clamp_min/clamp_max, and the
compositions hypot, logaddexp, logit, xlogy, deg2rad, rad2deg.

Each differentiable unary function is one row of elementwise's `_unary` (forward on arrays,
derivative on tensors). The rounding functions are flat almost everywhere: their outputs
take part in the graph with a zero gradient, as in PyTorch.
"""
from __future__ import annotations

import math

from ..backend import array_module
from .core import (
    Tensor,
    binary_operands,
    fix_float_dtype,
    grad_state,
    record,
    shape_error,
    sum_to_shape,
    wrap,
)
from .elementwise import _unary, clamp, sqrt

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)

reciprocal = _unary("reciprocal", lambda xp, x: 1.0 / x, lambda grad, out: -grad * out * out, saves="output", quiet=True)
rsqrt = _unary("rsqrt", lambda xp, x: 1.0 / xp.sqrt(x), lambda grad, out: grad * out * out * out * -0.5,
               saves="output", quiet=True)
log2 = _unary("log2", lambda xp, x: xp.log2(x), lambda grad, x: grad / (x * _LN2), quiet=True)
log10 = _unary("log10", lambda xp, x: xp.log10(x), lambda grad, x: grad / (x * _LN10), quiet=True)
exp2 = _unary("exp2", lambda xp, x: xp.exp2(x), lambda grad, out: grad * out * _LN2, saves="output")
tan = _unary("tan", lambda xp, x: xp.tan(x), lambda grad, out: grad * (1.0 + out * out), saves="output")
asin = _unary("asin", lambda xp, x: xp.arcsin(x), lambda grad, x: grad / sqrt(1.0 - x * x), quiet=True)
acos = _unary("acos", lambda xp, x: xp.arccos(x), lambda grad, x: -grad / sqrt(1.0 - x * x), quiet=True)
atan = _unary("atan", lambda xp, x: xp.arctan(x), lambda grad, x: grad / (1.0 + x * x))
sinh = _unary("sinh", lambda xp, x: xp.sinh(x), lambda grad, x: grad * cosh(x))
cosh = _unary("cosh", lambda xp, x: xp.cosh(x), lambda grad, x: grad * sinh(x))
asinh = _unary("asinh", lambda xp, x: xp.arcsinh(x), lambda grad, x: grad / sqrt(x * x + 1.0))
acosh = _unary("acosh", lambda xp, x: xp.arccosh(x), lambda grad, x: grad / sqrt(x * x - 1.0), quiet=True)
atanh = _unary("atanh", lambda xp, x: xp.arctanh(x), lambda grad, x: grad / (1.0 - x * x), quiet=True)
frac = _unary("frac", lambda xp, x: x - xp.trunc(x), lambda grad, x: grad)


def _rounding(name, array_fn):
    """floor / ceil / round / trunc: the same dtype back (integers unchanged), gradient zero."""

    def op(input, *, decimals=0):
        data = input._data
        if data.dtype.kind != "f":
            return wrap(data.copy())
        xp = array_module(data)
        out = array_fn(xp, data) if decimals == 0 else xp.round(data, decimals)
        result = wrap(out)
        if grad_state.enabled and input._requires_grad:
            record(name.capitalize(), _zero_backward, (input,), (result,))
        return result

    op.__name__ = name
    return op


def _zero_backward(node, grad):
    return (grad * 0.0,)


floor = _rounding("floor", lambda xp, data: xp.floor(data))
ceil = _rounding("ceil", lambda xp, data: xp.ceil(data))
round = _rounding("round", lambda xp, data: xp.round(data))  # half to even, as PyTorch
trunc = _rounding("trunc", lambda xp, data: xp.trunc(data))


def atan2(input, other):
    """The angle of (other, input) in (-pi, pi]; d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2)."""
    y, x = binary_operands(input, other, "atan2")
    try:
        out = array_module(y if hasattr(y, "shape") else x).arctan2(y, x)
    except ValueError:
        raise shape_error("atan2", getattr(y, "shape", ()), getattr(x, "shape", ()), " for broadcasting") from None
    result = wrap(fix_float_dtype(out, y, x))
    if grad_state.enabled and (getattr(input, "_requires_grad", False) or getattr(other, "_requires_grad", False)):
        record("Atan2", _atan2_backward, (input, other), (result,), saved=(input, other))
    return result


def _atan2_backward(node, grad):
    y, x = node.saved_tensors
    y_edge, x_edge = node.next_edges
    scale = grad / (x * x + y * y)
    return (sum_to_shape(scale * x, tuple(y.shape)) if y_edge is not None else None,
            sum_to_shape(-scale * y, tuple(x.shape)) if x_edge is not None else None)


def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 * tensor2."""
    return input + (tensor1 * tensor2 if value == 1 else tensor1 * tensor2 * value)


def addcdiv(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 / tensor2."""
    return input + (tensor1 / tensor2 if value == 1 else tensor1 / tensor2 * value)


def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


def hypot(input, other):
    """sqrt(input^2 + other^2)."""
    return sqrt(input * input + other * other)


def logaddexp(input, other):
    """log(exp(input) + exp(other)) as max + log1p(exp(-|input - other|)): no overflow; gradient sigmoid(input - other)."""
    from .elementwise import exp, log1p, maximum

    return maximum(input, other) + log1p(exp(-(input - other).abs()))


def logit(input, eps=None):
    """log(p / (1 - p)), with p clamped to [eps, 1 - eps] when eps is given."""
    from .elementwise import log

    p = input if eps is None else clamp(input, eps, 1.0 - eps)
    return log(p / (1.0 - p))


def xlogy(input, other):
    """input * log(other), and 0 where input is 0 (even where other is 0). The gradient to input is
    log(other), except where input is 0 and other <= 0: there it is 0 (PyTorch's rule)."""
    from .elementwise import log, where

    return input * log(where((input == 0) & (other <= 0), 1.0, other))


def deg2rad(input):
    return input * (math.pi / 180.0)


def rad2deg(input):
    return input * (180.0 / math.pi)


__all__ = [
    "Tensor",
    "acos",
    "acosh",
    "addcdiv",
    "addcmul",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "clamp_max",
    "clamp_min",
    "cosh",
    "deg2rad",
    "exp2",
    "floor",
    "frac",
    "hypot",
    "log2",
    "log10",
    "logaddexp",
    "logit",
    "rad2deg",
    "reciprocal",
    "round",
    "rsqrt",
    "sinh",
    "tan",
    "trunc",
    "xlogy",
]
