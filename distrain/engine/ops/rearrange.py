"""Ops that move or select elements without arithmetic: roll, tril/triu, diag, diagonal, meshgrid,
repeat_interleave, tensor_split.

Most are compositions of existing differentiable ops (index_select, expand, split, indexing),
so their gradients come from those; roll and the triangles have one-line backwards of their
own (roll back; keep the same triangle of the gradient).
"""
from __future__ import annotations

import itertools

from ...errors import ArgumentError, ShapeError
from .. import dtypes
from ..backend import array_module
from ..sizes import integers
from .core import Tensor, grad_state, normalize_dim, record, wrap


def roll(input, shifts, dims=None):
    """Shift elements along dims, wrapping around (dims=None: over the flattened tensor)."""
    data = input._data
    shifts = tuple(integers("roll", shifts if isinstance(shifts, (tuple, list)) else (shifts,), "shifts"))
    if dims is None:
        if len(shifts) != 1:
            raise ArgumentError(f"roll: without dims, shifts must be one int, got {shifts}")
        axes = None
    else:
        axes = tuple(normalize_dim(d, data.ndim, "roll") for d in (dims if isinstance(dims, (tuple, list)) else (dims,)))
        if len(axes) != len(shifts):
            raise ArgumentError(f"roll: shifts {shifts} and dims {tuple(axes)} must have the same length")
    xp = array_module(data)
    out = xp.roll(data, shifts[0] if axes is None else shifts, axis=axes)
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Roll", _roll_backward, (input,), (result,), args=(tuple(-s for s in shifts), axes))
    return result


def _roll_backward(node, grad):
    shifts, axes = node.args
    return (roll(grad, shifts, axes),)


def _triangle(name, keep):
    """tril / triu on the last two dims: `keep(xp, array, diagonal)` zeroes the other triangle."""

    def op(input, diagonal=0):
        data = input._data
        if data.ndim < 2:
            raise ShapeError(f"{name}: input must have at least 2 dimensions, got shape {tuple(data.shape)}")
        (diagonal,) = integers(name, (diagonal,), "diagonal")
        result = wrap(keep(array_module(data), data, diagonal))
        if grad_state.enabled and input._requires_grad:
            record(name.capitalize(), backward_fn, (input,), (result,), args=diagonal)
        return result

    def backward_fn(node, grad):
        return (op(grad, node.args),)

    op.__name__ = name
    return op


tril = _triangle("tril", lambda xp, data, k: xp.tril(data, k))
triu = _triangle("triu", lambda xp, data, k: xp.triu(data, k))


def _diagonal_positions(xp, rows, columns, offset):
    """(row indices, column indices) of the `offset` diagonal of a rows x columns matrix."""
    start_row, start_column = max(-offset, 0), max(offset, 0)
    length = max(min(rows - start_row, columns - start_column), 0)
    steps = xp.arange(length)
    return steps + start_row, steps + start_column


def diagonal(input, offset=0, dim1=0, dim2=1):
    """The `offset` diagonal of the (dim1, dim2) planes, as the last dimension (PyTorch's diagonal)."""
    data = input._data
    first = normalize_dim(dim1, data.ndim, "diagonal")
    second = normalize_dim(dim2, data.ndim, "diagonal")
    if first == second:
        raise ShapeError(f"diagonal: dim1 and dim2 must differ, both name dimension {first}")
    rest = [d for d in range(data.ndim) if d not in (first, second)]
    moved = input.permute(rest + [first, second])
    rows, columns = _diagonal_positions(array_module(data), data.shape[first], data.shape[second], offset)
    return moved[(Ellipsis, rows, columns)]


_plane_diagonal = diagonal  # diag's argument is also called `diagonal`, as in PyTorch


def diag(input, diagonal=0):
    """1-D input: a square matrix with it on the `diagonal`; 2-D input: that diagonal, as 1-D."""
    from .indexing import index_into_zeros

    if input.ndim == 2:
        return _plane_diagonal(input, diagonal)
    if input.ndim != 1:
        raise ShapeError(f"diag: input must be 1-D or 2-D, got shape {tuple(input.shape)}")
    n = input.shape[0] + abs(diagonal)
    rows, columns = _diagonal_positions(array_module(input._data), n, n, diagonal)
    return index_into_zeros(input, (n, n), (rows, columns), False)


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-D tensors: 'ij' (matrix) indexing, or 'xy' (Cartesian: the first two swapped)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ArgumentError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for i, t in enumerate(tensors):
        if t.ndim > 1:
            raise ShapeError(f"meshgrid: tensor {i} must be 0-d or 1-D, got shape {tuple(t.shape)}")
    axes = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        axes[0], axes[1] = 1, 0
    shape = [0] * len(tensors)
    for axis, t in zip(axes, tensors):
        shape[axis] = t.numel()
    grids = []
    for axis, t in zip(axes, tensors):
        placed = [1] * len(tensors)
        placed[axis] = t.numel()
        grids.append(t.reshape(placed).expand(shape))
    return tuple(grids)


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Repeat each element (dim=None: of the flattened tensor) or slice along `dim` `repeats` times.

    `repeats` is an int or a 1-D tensor of counts, one per element; `repeat_interleave(counts)`
    alone gives each index i repeated counts[i] times.
    """
    xp = array_module(input._data)
    if repeats is None:
        counts = input._data
        if counts.ndim > 1 or counts.dtype.kind not in "iu":
            raise ShapeError(f"repeat_interleave: counts must be a 1-D integer tensor, got shape "
                             f"{tuple(counts.shape)} dtype {counts.dtype}")
        return wrap(xp.repeat(xp.arange(counts.size, dtype=dtypes.int64), counts.reshape(-1)))
    if dim is None:
        input, axis = input.reshape(-1), 0
    else:
        axis = normalize_dim(dim, input.ndim, "repeat_interleave")
        if input.ndim == 0:
            input = input.reshape(1)
    extent = input.shape[axis]
    counts = repeats._data if isinstance(repeats, Tensor) else repeats
    if hasattr(counts, "ndim") and counts.ndim == 1 and counts.shape[0] != extent and counts.shape[0] != 1:
        raise ShapeError(f"repeat_interleave: repeats has {counts.shape[0]} counts but dim {axis} of shape "
                         f"{tuple(input.shape)} has {extent} elements; give one count per element or a single int")
    if hasattr(counts, "ndim") and counts.ndim > 1:
        raise ShapeError(f"repeat_interleave: repeats must be an int or 1-D, got shape {tuple(counts.shape)}")
    index = xp.repeat(xp.arange(extent, dtype=dtypes.int64), counts.reshape(-1) if hasattr(counts, "ndim") else counts)
    return input.index_select(axis, wrap(index))


def tensor_split(input, indices_or_sections, dim=0):
    """NumPy's array_split: n near-equal pieces (the first ones one larger), or pieces cut at given indices."""
    from .shape import split

    axis = normalize_dim(dim, input.ndim, "tensor_split")
    extent = input.shape[axis]
    if isinstance(indices_or_sections, Tensor):
        indices_or_sections = indices_or_sections.tolist()
    if isinstance(indices_or_sections, int):
        if indices_or_sections <= 0:
            raise ArgumentError(f"tensor_split: the number of sections must be positive, got {indices_or_sections}")
        whole, extra = divmod(extent, indices_or_sections)
        sizes = [whole + 1] * extra + [whole] * (indices_or_sections - extra)
        return split(input, sizes, axis)
    # cut points are slice bounds, as NumPy's: negative ones count from the end, and the pieces
    # between out-of-order cuts are empty or overlap (so they are slices, not one split)
    bounds = [0, *integers("tensor_split", tuple(indices_or_sections), "indices"), None]
    lead = (slice(None),) * axis
    return tuple(input[lead + (slice(start, end),)] for start, end in itertools.pairwise(bounds))


def rot90(input, k=1, dims=(0, 1)):
    """Rotate by 90 degrees k times in the plane of `dims`, from the first dim towards the second."""
    if len(dims) != 2:
        raise ArgumentError(f"rot90: dims must name two dimensions, got {tuple(dims)}")
    first, second = (normalize_dim(d, input.ndim, "rot90") for d in dims)
    if first == second:
        raise ShapeError(f"rot90: dims {tuple(dims)} name the same dimension twice")
    k %= 4
    if k == 0:
        return input.clone()
    if k == 2:
        return input.flip((first, second))
    if k == 1:
        return input.flip(second).transpose(first, second)
    return input.transpose(first, second).flip(second)


__all__ = ["Tensor", "diag", "diagonal", "meshgrid", "repeat_interleave", "roll", "rot90", "tensor_split", "tril",
           "triu"]
