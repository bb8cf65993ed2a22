"""Views and stacking under their other PyTorch names: movedim/moveaxis, swapaxes, unflatten, select,
broadcast_to, broadcast_tensors, hstack/vstack/dstack/column_stack.

Each is a composition of permute, reshape, expand, indexing and cat, whose gradients they inherit.
"""
from __future__ import annotations

import numpy

from ...errors import ShapeError
from ..sizes import integers
from .core import Tensor, normalize_dim
from .shape import cat, expand, permute, reshape, transpose


def movedim(input, source, destination):
    """Move dims `source` to positions `destination`, the others keeping their order."""
    sources = source if isinstance(source, (tuple, list)) else (source,)
    destinations = destination if isinstance(destination, (tuple, list)) else (destination,)
    if len(sources) != len(destinations):
        raise ShapeError(f"movedim: source {tuple(sources)} and destination {tuple(destinations)} must have the same "
                         "number of dims")
    sources = [normalize_dim(d, input.ndim, "movedim") for d in sources]
    destinations = [normalize_dim(d, input.ndim, "movedim") for d in destinations]
    if len(set(sources)) != len(sources) or len(set(destinations)) != len(destinations):
        raise ShapeError(f"movedim: repeated dim in source {tuple(sources)} or destination {tuple(destinations)}")
    rest = iter(d for d in range(input.ndim) if d not in sources)
    placed = dict(zip(destinations, sources))
    return permute(input, [placed[i] if i in placed else next(rest) for i in range(input.ndim)])


def swapaxes(input, axis0, axis1):
    return transpose(input, axis0, axis1)


def unflatten(input, dim, sizes):
    """Split dim `dim` into `sizes` (one may be -1)."""
    axis = normalize_dim(dim, input.ndim, "unflatten")
    sizes = tuple(integers("unflatten", tuple(sizes), "sizes"))
    shape = tuple(input.shape)
    known = int(numpy.prod([n for n in sizes if n != -1]))
    if (-1 not in sizes and known != shape[axis]) or (-1 in sizes and (known == 0 or shape[axis] % known)):
        raise ShapeError(f"unflatten: sizes {sizes} do not multiply to dim {axis} of shape {shape} ({shape[axis]})")
    return reshape(input, shape[:axis] + sizes + shape[axis + 1:])


def select(input, dim, index):
    """input[..., index, ...] with `index` at dim `dim` (that dim removed)."""
    axis = normalize_dim(dim, input.ndim, "select")
    return input[(slice(None),) * axis + (index,)]


def broadcast_to(input, size):
    return expand(input, size)


def broadcast_tensors(*tensors):
    """The tensors expanded to their common broadcast shape (views, as in PyTorch)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    try:
        shape = numpy.broadcast_shapes(*(tuple(t.shape) for t in tensors))
    except ValueError:
        raise ShapeError(f"broadcast_tensors: shapes {[tuple(t.shape) for t in tensors]} do not broadcast together "
                         "(trailing dimensions must be equal or 1)") from None
    return tuple(expand(t, shape) for t in tensors)


def _at_least(tensors, ndim):
    """Each tensor with dims added as NumPy's atleast_1d/2d/3d: (n,) is (1, n) in 2-D, (1, n, 1) in 3-D."""
    return [t if t.ndim >= ndim else reshape(t, _at_least_shape(tuple(t.shape), ndim)) for t in tensors]


def _at_least_shape(shape, ndim):
    if ndim == 1:
        return (1,)
    if ndim == 2:
        return (1,) + shape + (1,) * (1 - len(shape))
    return shape + (1,) if len(shape) == 2 else (1,) + (shape or (1,)) + (1,)


def hstack(tensors):
    tensors = _at_least(list(tensors), 1)
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat(_at_least(list(tensors), 2), 0)


def dstack(tensors):
    return cat(_at_least(list(tensors), 3), 2)


def column_stack(tensors):
    tensors = [reshape(t, (t.numel(), 1)) if t.ndim <= 1 else t for t in tensors]
    return cat(tensors, 1)


moveaxis = movedim
row_stack = vstack

__all__ = [
    "Tensor",
    "broadcast_tensors",
    "broadcast_to",
    "column_stack",
    "dstack",
    "hstack",
    "moveaxis",
    "movedim",
    "row_stack",
    "select",
    "swapaxes",
    "unflatten",
    "vstack",
]
