"""Comparing tensors as wholes or within a tolerance: isclose, allclose, equal.

PyTorch's rule is |input - other| <= atol + rtol * |other|, elementwise, with NaN equal to
NaN only when equal_nan is set and infinities equal only to themselves (NumPy's isclose,
whose arguments are the same). allclose and equal answer a Python bool.
"""
from __future__ import annotations

from ...errors import DTypeError
from ..backend import array_module
from .core import Tensor, binary_operands, shape_error, wrap


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = binary_operands(input, other, "isclose")
    if isinstance(input, Tensor) and isinstance(other, Tensor) and input.dtype != other.dtype:
        raise DTypeError(f"isclose: input ({input.dtype}) and other ({other.dtype}) must have the same dtype, "
                         "as in PyTorch; convert one first")
    try:
        return wrap(array_module(a if hasattr(a, "shape") else b).isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))
    except ValueError:
        raise shape_error("isclose", getattr(a, "shape", ()), getattr(b, "shape", ()), " for broadcasting") from None


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(isclose(input, other, rtol, atol, equal_nan)._data.all())


def equal(input, other):
    """True when both have the same shape and the same values (NaN never equals NaN)."""
    if tuple(input.shape) != tuple(other.shape):
        return False
    a, b = binary_operands(input, other, "equal")
    return bool((a == b).all())


__all__ = ["Tensor", "allclose", "equal", "isclose"]
