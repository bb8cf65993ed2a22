"""Sorting and selection: sort, argsort, msort, topk, kthvalue, unique, unique_consecutive.

sort and topk only decide *which* element goes where; the values are then read with
`gather`, so their backward is gather's: each value's gradient goes back to the position
it came from. unique has no gradient (as in PyTorch, whose backward is not implemented).
"""
from __future__ import annotations

from ...errors import ArgumentError, ShapeError
from .. import dtypes
from ..backend import array_module
from .core import Tensor, normalize_dim, wrap
from .indexing import gather
from .reduce import ValuesIndices


def _order(data, axis, descending, xp):
    """Indices that sort `data` along `axis`, stably, NaN counted as the largest value (PyTorch's rule).

    Descending order is the ascending stable sort of the reversed array, reversed again:
    ties keep their original order and NaN comes first, without negating the values
    (which would overflow the smallest integer and is meaningless for bool).
    """
    if not descending:
        return xp.argsort(data, axis=axis, kind="stable")
    reversed_order = xp.argsort(xp.flip(data, axis), axis=axis, kind="stable")
    return xp.flip(data.shape[axis] - 1 - reversed_order, axis)


def _take(input, indices, axis):
    """(values, int64 indices): the input read at `indices` along `axis`, differentiably."""
    indices = wrap(indices.astype(dtypes.int64, copy=False))
    return ValuesIndices(gather(input, axis, indices), indices)


def sort(input, dim=-1, descending=False, stable=False):
    """(values, indices) sorted along `dim`; ties keep their order (every sort here is stable)."""
    data = input._data
    axis = normalize_dim(dim, data.ndim, "sort")
    if data.ndim == 0:
        values, indices = _take(input.reshape(1), array_module(data).zeros(1), 0)  # one element: itself, at 0
        return ValuesIndices(values.reshape(()), indices.reshape(()))
    return _take(input, _order(data, axis, descending, array_module(data)), axis)


def argsort(input, dim=-1, descending=False, stable=False):
    return sort(input, dim, descending, stable).indices


def msort(input):
    return sort(input, 0).values


def _checked_k(name, k, lowest, data, dim):
    """The axis of `dim`, once `k` is an int in [lowest, that dim's size]; else an ArgumentError naming k."""
    axis = normalize_dim(dim, data.ndim, name)
    extent = data.shape[axis] if data.ndim else 1
    if isinstance(k, bool) or not isinstance(k, int) or not lowest <= k <= extent:
        raise ArgumentError(f"{name}: k must be an int in [{lowest}, {extent}] (the size of dim {dim} of shape "
                            f"{tuple(data.shape)}), got {k!r}")
    return axis


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The k largest (or smallest) elements along `dim`, as (values, indices), largest first."""
    data = input._data
    axis = _checked_k("topk", k, 0, data, dim)
    if data.ndim == 0:
        return sort(input)
    order = _order(data, axis, largest, array_module(data))
    first_k = (slice(None),) * axis + (slice(0, k),)
    return _take(input, order[first_k], axis)


def kthvalue(input, k, dim=-1, keepdim=False):
    """The k-th smallest element (1-based) along `dim`, as (values, indices)."""
    data = input._data
    axis = _checked_k("kthvalue", k, 1, data, dim)
    if data.ndim == 0:
        return sort(input)
    order = _order(data, axis, False, array_module(data))
    values, indices = _take(input, order[(slice(None),) * axis + (slice(k - 1, k),)], axis)
    if keepdim:
        return ValuesIndices(values, indices)
    return ValuesIndices(values.squeeze(axis), indices.squeeze(axis))


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct elements (dim=None: of the flattened tensor) or distinct slices along `dim`, sorted.

    Returns the values alone, or a tuple with the int64 `inverse` (where each input element,
    or slice, went: input's shape for dim=None) and the int64 `counts`. The result is always
    sorted, which `sorted=False` permits. No gradient flows through unique.
    """
    data = input._data
    xp = array_module(data)
    if dim is None:
        values, inverse, counts = xp.unique(data.reshape(-1), return_inverse=True, return_counts=True)
        inverse = inverse.reshape(data.shape)
    else:
        axis = normalize_dim(dim, data.ndim, "unique")
        if data.ndim == 0:
            raise ShapeError("unique: dim cannot be given for a 0-d tensor")
        values, inverse, counts = xp.unique(data, return_inverse=True, return_counts=True, axis=axis)
        inverse = inverse.reshape(-1)
    return _unique_result(values, inverse, counts, return_inverse, return_counts)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """Collapse runs of equal consecutive elements (or slices along `dim`) into one, like `uniq`."""
    data = input._data
    xp = array_module(data)
    if dim is None:
        flat = data.reshape(-1)
        axis = 0
    else:
        axis = normalize_dim(dim, data.ndim, "unique_consecutive")
        flat = xp.moveaxis(data, axis, 0)
    if flat.shape[0] == 0:
        starts = xp.zeros(0, dtype=bool)
    else:
        differs = (flat[1:] != flat[:-1]).reshape(flat.shape[0] - 1, -1).any(axis=1)
        starts = xp.concatenate([xp.ones(1, dtype=bool), differs])
    start_positions = xp.flatnonzero(starts)
    values = xp.moveaxis(flat[start_positions], 0, axis) if dim is not None else flat[start_positions]
    inverse = xp.cumsum(starts) - 1
    counts = xp.diff(xp.append(start_positions, flat.shape[0]))
    return _unique_result(values, inverse.reshape(data.shape) if dim is None else inverse, counts,
                          return_inverse, return_counts)


def _unique_result(values, inverse, counts, return_inverse, return_counts):
    out = [wrap(values)]
    if return_inverse:
        out.append(wrap(inverse.astype(dtypes.int64, copy=False)))
    if return_counts:
        out.append(wrap(counts.astype(dtypes.int64, copy=False)))
    return out[0] if len(out) == 1 else tuple(out)


__all__ = ["Tensor", "argsort", "kthvalue", "msort", "sort", "topk", "unique", "unique_consecutive"]
