"""Products built on matmul: outer, and the fused "beta * input + alpha * product" forms addmm and baddbmm.

They are compositions of matmul, mul and add, so their gradients are those ops' gradients.
As in PyTorch, beta=0 ignores `input` entirely (a NaN there does not leak into the result).
"""
from __future__ import annotations

from ...errors import ShapeError
from .core import Tensor
from .linalg import bmm, mm


def outer(input, vec2):
    """The outer product of two 1-D tensors: out[i, j] = input[i] * vec2[j]."""
    if input.ndim != 1 or vec2.ndim != 1:
        raise ShapeError(f"outer: expected two 1-D tensors, got shapes {tuple(input.shape)} and {tuple(vec2.shape)}")
    return input.unsqueeze(1) * vec2.unsqueeze(0)


def _scaled_sum(name, product_fn):
    def op(input, first, second, *, beta=1, alpha=1):
        product = product_fn(first, second)
        try:
            input_shape_fits = tuple(input.expand(product.shape).shape) == tuple(product.shape)
        except ShapeError:
            input_shape_fits = False
        if not input_shape_fits:
            raise ShapeError(f"{name}: input of shape {tuple(input.shape)} does not broadcast to the product's shape "
                             f"{tuple(product.shape)} (of {tuple(first.shape)} and {tuple(second.shape)})")
        scaled = product if alpha == 1 else product * alpha
        if beta == 0:
            return scaled
        return scaled + (input if beta == 1 else input * beta)

    op.__name__ = name
    op.__doc__ = f"beta * input + alpha * {product_fn.__name__}(...), input broadcast to the product's shape."
    return op


addmm = _scaled_sum("addmm", mm)
baddbmm = _scaled_sum("baddbmm", bmm)

__all__ = ["Tensor", "addmm", "baddbmm", "outer"]
