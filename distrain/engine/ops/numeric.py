"""Numeric helpers people reach for in training code: lerp, nan_to_num.

lerp is input + weight * (end - input) from differentiable primitives, so its gradients
(1 - weight, weight, end - input) follow. nan_to_num's gradient passes where the input was
finite and is zero where a NaN or infinity was replaced (PyTorch's rule).
"""
from __future__ import annotations

from ...errors import DTypeError
from ..backend import array_module
from .core import Tensor, grad_state, record, wrap


def lerp(input, end, weight):
    """input + weight * (end - input); weight is a number or a tensor broadcasting with both."""
    if input.dtype != end.dtype or (isinstance(weight, Tensor) and weight.dtype != input.dtype):
        raise DTypeError(f"lerp: input ({input.dtype}), end ({end.dtype}) and a tensor weight "
                         f"({getattr(weight, 'dtype', 'number')}) must have the same dtype")
    return input + weight * (end - input)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN -> nan, +inf -> posinf (default: the dtype's largest value), -inf -> neginf (its lowest)."""
    data = input._data
    xp = array_module(data)
    if data.dtype.kind != "f":
        return wrap(data.copy())
    info = xp.finfo(data.dtype)
    out = xp.nan_to_num(data, nan=nan, posinf=info.max if posinf is None else posinf,
                        neginf=info.min if neginf is None else neginf)
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("NanToNum", _nan_to_num_backward, (input,), (result,), args=wrap(xp.isfinite(data)))
    return result


def _nan_to_num_backward(node, grad):
    return (grad * node.args,)


__all__ = ["Tensor", "lerp", "nan_to_num"]
