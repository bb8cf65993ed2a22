"""The activation functions beyond relu/gelu/sigmoid/tanh: silu, mish, softplus, elu/selu/celu, prelu,
hardswish/hardsigmoid/hardtanh/relu6, softsign, tanhshrink, logsigmoid, the shrinks, threshold, glu, softmin.

Most are compositions of differentiable primitives (their gradients, higher derivatives
included, follow from the primitives'). `silu` is one op for speed (it is in every
modern convolutional net); two are ops of their own because a composition would get the
gradient wrong at a point real inputs hit:

- `softplus`: the stable form max(z, 0) + log1p(exp(-|z|)) has a kink at z = 0 in each
  term; composed, their one-sided gradients give 1 at 0 instead of sigmoid(0) = 1/2
  (and mish(0), logsigmoid(0) would inherit it). Its backward is grad * sigmoid(beta x).
- `hardtanh`: clamp passes the gradient on the boundaries; PyTorch's hardtanh, relu6,
  hardsigmoid and hardswish pass none there (x <= min or x >= max).

Their backwards are written on tensors (silu's too under create_graph), so create_graph
differentiates them again.
"""
from __future__ import annotations

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from . import elementwise
from .core import grad_state, record, wrap
from .elementwise import _floating, _sigmoid, expm1, sigmoid, tanh, where
from .softmax import implicit_dim, softmax

# PyTorch's SELU constants (Klambauer et al., 2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _in_place_or_not(function, input, inplace, *args):
    """function(input, *args), written over the input when inplace=True (PyTorch's option).

    The function's backward may need the input's old values, which the overwrite destroys
    (autograd would refuse the backward); so when a graph is being recorded the function
    reads a copy, and in-place saves the activation's memory only under no_grad, where
    nothing is saved.
    """
    if not inplace:
        return function(input, *args)
    source = input.clone() if grad_state.enabled and input._requires_grad else input
    return input.copy_(function(source, *args))


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's linear tail)."""
    data = _floating(input._data)
    xp = array_module(data)
    z = data * beta
    out = (xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))) / beta
    out = xp.where(z > threshold, data, out).astype(data.dtype, copy=False)
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Softplus", _softplus_backward, (input,), (result,), saved=(input,), args=(beta, threshold))
    return result


def _softplus_backward(node, grad):
    (x,) = node.saved_tensors
    beta, threshold = node.args
    z = x * beta
    return (grad * where(z > threshold, 1.0, sigmoid(z)),)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clipped to [min_val, max_val]; no gradient on or beyond the boundaries (unlike clamp)."""
    if min_val > max_val:
        raise ArgumentError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
    return _in_place_or_not(_hardtanh, input, inplace, min_val, max_val)


def _hardtanh(input, min_val, max_val):
    data = input._data
    xp = array_module(data)
    result = wrap(xp.minimum(xp.maximum(data, min_val), max_val).astype(data.dtype, copy=False))
    if grad_state.enabled and input._requires_grad:
        record("Hardtanh", _hardtanh_backward, (input,), (result,), saved=(input,), args=(min_val, max_val))
    return result


def _hardtanh_backward(node, grad):
    (x,) = node.saved_tensors
    low, high = node.args
    inside = wrap((x._data > low) & (x._data < high))
    return (where(inside, grad, 0.0),)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x for x > 0, negative_slope * x otherwise (elementwise.leaky_relu with PyTorch's inplace option)."""
    return _in_place_or_not(elementwise.leaky_relu, input, inplace, negative_slope)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6: a piecewise-linear sigmoid."""
    return _in_place_or_not(lambda x: hardtanh(x + 3.0, 0.0, 6.0) / 6.0, input, inplace)


def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6 (MobileNetV3); its gradient is x/3 + 1/2 strictly inside (-3, 3), 0 at -3 and 1 at 3,
    as PyTorch's (relu6 passes no gradient on its boundaries)."""
    return _in_place_or_not(lambda x: x * hardtanh(x + 3.0, 0.0, 6.0) / 6.0, input, inplace)


def silu(input, inplace=False):
    """x * sigmoid(x) (also called swish)."""
    return _in_place_or_not(_silu, input, inplace)


def _silu(input):
    # one op: composed (sigmoid, mul and their backwards) it made ~5x PyTorch's passes over memory
    data = _floating(input._data)
    result = wrap(data * _sigmoid(array_module(data), data))
    if grad_state.enabled and input._requires_grad:
        record("Silu", _silu_backward, (input,), (result,), saved=(input,))
    return result


def _silu_backward(node, grad):
    """d/dx x s(x) = s (1 + x (1 - s)), s recomputed rather than kept (PyTorch keeps only x, too)."""
    (x,) = node.saved_tensors
    if grad_state.enabled:  # create_graph: the same formula from differentiable ops
        s = sigmoid(x)
        return (grad * (s * (1.0 + x * (1.0 - s))),)
    data = x._data
    s = _sigmoid(array_module(data), data)
    derivative = 1.0 - s
    derivative *= data
    derivative += 1.0
    derivative *= s
    derivative *= grad._data
    return (wrap(derivative),)


def mish(input, inplace=False):
    """x * tanh(softplus(x))."""
    return _in_place_or_not(lambda x: x * tanh(softplus(x)), input, inplace)


def _elu(input, alpha, scale, input_scale):
    """PyTorch's one ELU family: scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))."""
    negative = expm1(input.clamp(max=0.0) * input_scale) * (alpha * scale)  # clamp: no overflow for large x
    return where(input > 0, input * scale if scale != 1.0 else input, negative)


def elu(input, alpha=1.0, inplace=False):
    return _in_place_or_not(_elu, input, inplace, alpha, 1.0, 1.0)


def selu(input, inplace=False):
    """Self-normalising ELU with PyTorch's fixed alpha and scale."""
    return _in_place_or_not(_elu, input, inplace, SELU_ALPHA, SELU_SCALE, 1.0)


def celu(input, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    if alpha == 0:
        raise ArgumentError("celu: alpha must not be 0 (it divides the input)")
    return _in_place_or_not(_elu, input, inplace, alpha, 1.0, 1.0 / alpha)


def prelu(input, weight):
    """x for x > 0, weight * x otherwise; `weight` has 1 element or one per channel (dim 1 of input)."""
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.ndim > 1 or weight.numel() not in (1, channels):
        raise ShapeError(f"prelu: weight must have 1 element or one per channel ({channels} for input of shape "
                         f"{tuple(input.shape)}, channels on dim 1), got weight of shape {tuple(weight.shape)}")
    if weight.numel() > 1:
        weight = weight.reshape((channels,) + (1,) * (input.ndim - 2))
    else:
        weight = weight.reshape(())
    return where(input > 0, input, weight * input)


def softsign(input):
    return input / (input.abs() + 1.0)


def tanhshrink(input):
    return input - tanh(input)


def logsigmoid(input):
    """log(sigmoid(x)) = -softplus(-x), stable for every x (no linear tail: threshold infinite)."""
    return -softplus(-input, 1.0, float("inf"))


def hardshrink(input, lambd=0.5):
    """x where |x| > lambd, else 0."""
    return where(input.abs() > lambd, input, 0.0)


def softshrink(input, lambd=0.5):
    """x moved towards 0 by lambd, 0 inside [-lambd, lambd]."""
    if lambd < 0:
        raise ArgumentError(f"softshrink: lambd must be non-negative, got {lambd}")
    return input - input.clamp(-lambd, lambd)


def threshold(input, threshold, value, inplace=False):
    """x where x > threshold, else `value`."""
    return _in_place_or_not(lambda x: where(x > threshold, x, value), input, inplace)


def glu(input, dim=-1):
    """Gated linear unit: the first half of `dim` times the sigmoid of the second half."""
    if input.ndim == 0:
        raise ShapeError("glu: does not support 0-d tensors; give a tensor whose dim has an even size")
    size = input.shape[dim]
    if size % 2:
        raise ShapeError(f"glu: halving dimension must be even, but dimension {dim} of input shape "
                         f"{tuple(input.shape)} has size {size}")
    first, second = input.chunk(2, dim)
    return first * sigmoid(second)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """softmax(-x): weights that favour the smallest entries along `dim`."""
    return softmax(-input, implicit_dim("softmin", dim, input.ndim, _stacklevel), dtype=dtype)


__all__ = ["celu", "elu", "glu", "hardshrink", "hardsigmoid", "hardswish", "hardtanh", "leaky_relu", "logsigmoid",
           "mish", "prelu", "relu6", "selu", "silu", "softmin", "softplus", "softshrink", "softsign", "tanhshrink",
           "threshold"]
