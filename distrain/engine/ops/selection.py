"""Reading elements by mask or flat position: masked_select, take, take_along_dim, diff.

All are indexing (whose backward writes the gradient back to where each element came
from, accumulating over repeats) or differences of slices.
"""
from __future__ import annotations

import numpy

from ...errors import DTypeError, IndexingError, ShapeError
from ..backend import array_module
from .core import Tensor, normalize_dim
from .value_checks import require_range
from .indexing import gather


def masked_select(input, mask):
    """The elements where `mask` (broadcast with input) is True, as a 1-D tensor."""
    mask_data = mask._data if isinstance(mask, Tensor) else mask
    if getattr(mask_data, "dtype", None) is None or mask_data.dtype.kind != "b":
        raise DTypeError(f"masked_select: mask must be a bool tensor, got {getattr(mask_data, 'dtype', type(mask))}")
    try:
        shape = numpy.broadcast_shapes(tuple(input.shape), tuple(mask_data.shape))
    except ValueError:
        raise ShapeError(f"masked_select: mask of shape {tuple(mask_data.shape)} does not broadcast with the input's "
                         f"shape {tuple(input.shape)}") from None
    from .shape import expand

    values = expand(input, shape) if tuple(input.shape) != tuple(shape) else input
    return values[array_module(mask_data).broadcast_to(mask_data, shape)]


def take(input, index):
    """input.flatten()[index], in index's shape."""
    index_data = index._data if isinstance(index, Tensor) else index
    if index_data.dtype.kind not in "iu":
        raise DTypeError(f"take: index must be an integer tensor, got dtype {index_data.dtype}")
    size = input.numel()
    require_range(index_data, -size, size, IndexingError, "take: index values range over [{lowest}, {highest}] but "
                  f"the input (shape {tuple(input.shape)}) has {size} elements")
    return input.reshape(-1)[index_data]


def take_along_dim(input, indices, dim=None):
    """gather with broadcasting of the other dims (dim=None: over the flattened input)."""
    if dim is None:
        return take(input, indices.reshape(-1))
    axis = normalize_dim(dim, input.ndim, "take_along_dim")
    from .shape import expand

    if input.ndim != indices.ndim:
        raise ShapeError(f"take_along_dim: input {tuple(input.shape)} and indices {tuple(indices.shape)} must have "
                         "the same number of dimensions")
    others = [tuple(1 if d == axis else n for d, n in enumerate(t.shape)) for t in (input, indices)]
    try:
        common = numpy.broadcast_shapes(*others)
    except ValueError:
        raise ShapeError(f"take_along_dim: input {tuple(input.shape)} and indices {tuple(indices.shape)} do not "
                         f"broadcast outside dim {axis}") from None

    def along(t):
        return expand(t, tuple(t.shape[d] if d == axis else n for d, n in enumerate(common)))

    return gather(along(input), axis, along(indices))


def diff(input, n=1, dim=-1, prepend=None, append=None):
    """The n-th forward difference along `dim`: out[i] = x[i + 1] - x[i], applied n times."""
    from .shape import cat

    axis = normalize_dim(dim, input.ndim, "diff")
    if prepend is not None or append is not None:
        input = cat([t for t in (prepend, input, append) if t is not None], axis)
    lead = (slice(None),) * axis
    for _ in range(n):
        input = input[lead + (slice(1, None),)] - input[lead + (slice(None, -1),)]
    return input


__all__ = ["Tensor", "diff", "masked_select", "take", "take_along_dim"]
