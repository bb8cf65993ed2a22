"""Elementwise functions and activations: exp, log, ..., relu, gelu, sigmoid, tanh, clamp, where.

Each unary op is one row: the forward on arrays, and the backward on tensors, side by side.
`_unary` turns a row into the public function; the backward saves either the input or the
output, whichever the derivative is cheapest in (d exp = exp, d tanh = 1 - tanh^2, ...).
"""
from __future__ import annotations

import math

import numpy

from ...errors import ArgumentError
from .. import dtypes
from ..backend import array_module, is_numpy
from ..kernels import relu as relu_kernels
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


def _floating(data):
    """Integer/bool inputs of float-valued functions compute in the default float dtype."""
    return data if data.dtype.kind == "f" or data.dtype.kind == "c" else data.astype(dtypes.get_default_dtype())


def _unary(name, forward, backward, saves="input", quiet=False):
    """Build `op(input)`: forward(xp, array) -> array; backward(grad, saved) -> input grad."""
    node_name = name.capitalize()

    def backward_fn(node, grad):
        (saved,) = node.saved_tensors
        return (backward(grad, saved),)

    def op(input):
        data = _floating(input._data)
        xp = array_module(data)
        if quiet:
            with numpy.errstate(divide="ignore", invalid="ignore"):
                out = forward(xp, data)
        else:
            out = forward(xp, data)
        result = wrap(out)
        if grad_state.enabled and input._requires_grad:
            record(node_name, backward_fn, (input,), (result,), saved=(result if saves == "output" else input,))
        return result

    op.__name__ = name
    op.__qualname__ = name
    return op


exp = _unary("exp", lambda xp, x: xp.exp(x), lambda grad, out: grad * out, saves="output")
log = _unary("log", lambda xp, x: xp.log(x), lambda grad, x: grad / x, quiet=True)
sqrt = _unary("sqrt", lambda xp, x: xp.sqrt(x), lambda grad, out: grad / (out * 2.0), saves="output", quiet=True)
sin = _unary("sin", lambda xp, x: xp.sin(x), lambda grad, x: grad * cos(x))
cos = _unary("cos", lambda xp, x: xp.cos(x), lambda grad, x: -grad * sin(x))
tanh = _unary("tanh", lambda xp, x: xp.tanh(x), lambda grad, out: grad * (1.0 - out * out), saves="output")
sigmoid = _unary("sigmoid", lambda xp, x: _sigmoid(xp, x),
                 lambda grad, out: grad * (out * (1.0 - out)), saves="output")
log1p = _unary("log1p", lambda xp, x: xp.log1p(x), lambda grad, x: grad / (x + 1.0), quiet=True)
expm1 = _unary("expm1", lambda xp, x: xp.expm1(x), lambda grad, out: grad * (out + 1.0), saves="output")
relu = _unary("relu", lambda xp, x: relu_kernels.relu_forward(x), lambda grad, out: _relu_backward(grad, out),
              saves="output")


def _relu_backward(grad, out):
    """grad * (out > 0): one compiled pass (kernels/relu.py) unless a create_graph backward records this."""
    if grad_state.enabled:
        return grad * (out > 0)
    return wrap(relu_kernels.relu_backward(grad._data, out._data))


def _sigmoid(xp, x):
    # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)) for very negative x
    out = xp.multiply(x, 0.5, out=xp.empty_like(x))  # an array even for 0-d input
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def abs(input):
    data = input._data
    result = wrap(array_module(data).abs(data))
    if grad_state.enabled and input._requires_grad:
        record("Abs", _abs_backward, (input,), (result,), saved=(input,))
    return result


def _abs_backward(node, grad):
    (x,) = node.saved_tensors
    return (grad * sign(x),)


def sign(input):
    """-1, 0 or 1 by the sign of each element (no gradient: it is zero almost everywhere)."""
    return wrap(array_module(input._data).sign(input._data))


def leaky_relu(input, negative_slope=0.01):
    data = input._data
    xp = array_module(data)
    result = wrap(xp.where(data > 0, data, data * negative_slope))
    if grad_state.enabled and input._requires_grad:
        record("LeakyRelu", _leaky_relu_backward, (input,), (result,), saved=(input,), args=negative_slope)
    return result


def _leaky_relu_backward(node, grad):
    (x,) = node.saved_tensors
    slope_where_negative = where(x > 0, 1.0, node.args)
    return (grad * slope_where_negative.to(grad.dtype),)


# -- erf and GELU ----------------------------------------------------------------------
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_exact_erf = numpy.frompyfunc(math.erf, 1, 1)


def _erf_array(xp, x):
    """erf with a vectorised special-function library when present (scipy/cupyx), else exact math.erf."""
    if is_numpy(xp):
        try:
            from scipy.special import erf as scipy_erf
        except ImportError:
            return numpy.asarray(_exact_erf(x), dtype=numpy.float64).astype(x.dtype)
        return scipy_erf(x)
    from cupyx.scipy.special import erf as cupy_erf

    return cupy_erf(x)


erf = _unary("erf", _erf_array, lambda grad, x: grad * (exp(-(x * x)) * _TWO_OVER_SQRT_PI))

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(input, approximate="none"):
    """x * Phi(x), exactly (erf) or with PyTorch's tanh approximation (approximate="tanh")."""
    if approximate not in ("none", "tanh"):
        raise ArgumentError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    data = _floating(input._data)
    xp = array_module(data)
    if approximate == "tanh":
        inner = xp.tanh((data + 0.044715 * data * data * data) * _SQRT_2_OVER_PI)
        out = 0.5 * data * (1.0 + inner)
    else:
        out = 0.5 * data * (1.0 + _erf_array(xp, data * _INV_SQRT_2))
    result = wrap(out.astype(data.dtype, copy=False))
    if grad_state.enabled and input._requires_grad:
        record("Gelu", _gelu_backward, (input,), (result,), saved=(input,), args=approximate)
    return result


def _gelu_backward(node, grad):
    (x,) = node.saved_tensors
    if node.args == "tanh":
        inner = tanh((x + x * x * x * 0.044715) * _SQRT_2_OVER_PI)
        d_inner = (1.0 - inner * inner) * ((1.0 + x * x * 0.134145) * _SQRT_2_OVER_PI)
        return (grad * (0.5 * (1.0 + inner) + 0.5 * x * d_inner),)
    cdf = 0.5 * (1.0 + erf(x * _INV_SQRT_2))
    pdf = exp(x * x * -0.5) * _INV_SQRT_2PI
    return (grad * (cdf + x * pdf),)


# -- selection -------------------------------------------------------------------------
def clamp(input, min=None, max=None):
    """Limit every element to [min, max]; the gradient passes where the input was inside."""
    if min is None and max is None:
        raise ArgumentError("clamp: at least one of min and max must be given")
    if grad_state.enabled and (getattr(min, "_requires_grad", False) or getattr(max, "_requires_grad", False)):
        # tensor bounds that want gradients: each element's gradient goes to whichever of
        # input, min and max it came from (ties to the input), as in PyTorch
        lower = input if min is None else where(input < min, min, input)
        return lower if max is None else where(lower > max, max, lower)
    data = input._data
    xp = array_module(data)
    low = min._data if isinstance(min, Tensor) else min
    high = max._data if isinstance(max, Tensor) else max
    if high is None:
        out = xp.maximum(data, low)
    elif low is None:
        out = xp.minimum(data, high)
    else:
        out = xp.minimum(xp.maximum(data, low), high)
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Clamp", _clamp_backward, (input,), (result,), saved=(input,), args=(low, high))
    return result


def _clamp_backward(node, grad):
    (x,) = node.saved_tensors
    low, high = node.args
    data = x._data
    if high is None:
        inside = data >= low
    elif low is None:
        inside = data <= high
    else:
        inside = (data >= low) & (data <= high)
    if grad_state.enabled:  # create_graph: recorded
        return (grad * wrap(inside),)
    return (wrap(grad._data * inside),)  # the same product on the arrays: no op overhead when nothing records


def where(condition, input=None, other=None):
    """Elementwise `input if condition else other`, with broadcasting; `where(condition)` alone is
    `nonzero(condition, as_tuple=True)`."""
    if input is None and other is None:
        from .scatter_gather import nonzero

        return nonzero(condition, as_tuple=True)
    cond = condition._data if isinstance(condition, Tensor) else condition
    like = input if isinstance(input, Tensor) else other
    if not isinstance(like, Tensor):  # two numbers: PyTorch's result type of two scalars, on the condition's device
        out = array_module(cond).where(cond, input, other)
        return wrap(out.astype(dtypes.get_default_dtype()) if out.dtype == numpy.float64 else out)
    a, b = binary_operands(input, other, "where")
    xp = array_module(like._data)
    try:
        out = xp.where(cond, a, b)
    except ValueError:
        raise shape_error("where", getattr(a, "shape", ()), getattr(b, "shape", ()),
                          f" with a condition of shape {getattr(cond, 'shape', ())} for broadcasting") from None
    if out.dtype == numpy.float64 and getattr(a, "dtype", None) != numpy.float64 and getattr(b, "dtype", None) != numpy.float64:
        out = out.astype(dtypes.get_default_dtype())
    result = wrap(out)
    if grad_state.enabled and (getattr(input, "_requires_grad", False) or getattr(other, "_requires_grad", False)):
        record("Where", _where_backward, (input, other), (result,),
               args=(cond, getattr(a, "shape", ()), getattr(b, "shape", ())))
    return result


def _where_backward(node, grad):
    cond, a_shape, b_shape = node.args
    a_edge, b_edge = node.next_edges
    zero = 0.0
    return (sum_to_shape(where(wrap(cond), grad, zero), a_shape) if a_edge is not None else None,
            sum_to_shape(where(wrap(cond), zero, grad), b_shape) if b_edge is not None else None)


def _extremum(name, pick, mask_of_self):
    def op(input, other):
        a, b = binary_operands(input, other, name)
        try:
            out = pick(array_module(a if hasattr(a, "shape") else b))(a, b)
        except ValueError:
            raise shape_error(name, getattr(a, "shape", ()), getattr(b, "shape", ()), " for broadcasting") from None
        result = wrap(fix_float_dtype(out, a, b))  # int64 with float32 is float32, as in PyTorch (NumPy: float64)
        if grad_state.enabled and (getattr(input, "_requires_grad", False) or getattr(other, "_requires_grad", False)):
            # The share of the gradient that goes to `input`: 1 where it won, 1/2 on ties (as in PyTorch).
            share_of_a = (mask_of_self(a, b) + (a == b) * 0.5).astype(out.dtype)
            record(name.capitalize(), backward_fn, (input, other), (result,),
                   args=(wrap(share_of_a), getattr(a, "shape", ()), getattr(b, "shape", ())))
        return result

    def backward_fn(node, grad):
        share_of_a, a_shape, b_shape = node.args
        a_edge, b_edge = node.next_edges
        return (sum_to_shape(grad * share_of_a, a_shape) if a_edge is not None else None,
                sum_to_shape(grad * (1.0 - share_of_a), b_shape) if b_edge is not None else None)

    op.__name__ = name
    return op


maximum = _extremum("maximum", lambda xp: xp.maximum, lambda a, b: a > b)
minimum = _extremum("minimum", lambda xp: xp.minimum, lambda a, b: a < b)
