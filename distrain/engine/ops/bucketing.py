"""Counting and bucketing (no gradients): searchsorted, bucketize, bincount, histc, tril_indices, triu_indices."""
from __future__ import annotations

from ...errors import ArgumentError, DTypeError, ShapeError
from .. import dtypes
from ..backend import array_module
from .core import Tensor, wrap
from .rearrange import tril, triu


def searchsorted(sorted_sequence, values, *, out_int32=False, right=False, side=None):
    """Where each of `values` would be inserted into the sorted last dim of `sorted_sequence`."""
    boundaries = sorted_sequence._data
    xp = array_module(boundaries)
    queries = values._data if isinstance(values, Tensor) else xp.asarray(values)
    side = side or ("right" if right else "left")
    if side not in ("left", "right"):
        raise ArgumentError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
    if boundaries.ndim == 1:
        out = xp.searchsorted(boundaries, queries, side=side)
    else:
        if boundaries.shape[:-1] != queries.shape[:-1]:
            raise ShapeError(f"searchsorted: sorted_sequence {tuple(boundaries.shape)} and values {tuple(queries.shape)} "
                             "must match in all but the last dim")
        rows = boundaries.reshape(-1, boundaries.shape[-1])
        flat = queries.reshape(rows.shape[0], -1)
        out = xp.stack([xp.searchsorted(row, q, side=side) for row, q in zip(rows, flat)]).reshape(queries.shape)
    return wrap(out.astype(dtypes.int32 if out_int32 else dtypes.int64))


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """The bucket of each element for 1-D `boundaries` (right=False: boundaries[i-1] < x <= boundaries[i])."""
    if boundaries.ndim != 1:
        raise ShapeError(f"bucketize: boundaries must be 1-D, got shape {tuple(boundaries.shape)}")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def bincount(input, weights=None, minlength=0):
    """How often each non-negative int occurs (summed weights if given)."""
    data = input._data
    if data.ndim != 1 or data.dtype.kind not in "iu":
        raise DTypeError(f"bincount: input must be a 1-D integer tensor, got shape {tuple(data.shape)} dtype {data.dtype}")
    if data.size and int(data.min()) < 0:
        raise ArgumentError(f"bincount: input must be non-negative, got a minimum of {int(data.min())}")
    xp = array_module(data)
    out = xp.bincount(data, weights=None if weights is None else weights._data, minlength=minlength)
    return wrap(out.astype(dtypes.int64 if weights is None else weights.dtype))


def histc(input, bins=100, min=0, max=0):
    """Counts in `bins` equal bins over [min, max] (the data's range when both are 0); outside is ignored."""
    data = input._data
    xp = array_module(data)
    low, high = (float(data.min()), float(data.max())) if min == 0 and max == 0 and data.size else (min, max)
    if low == high:
        low, high = low - 1, high + 1
    counts, _ = xp.histogram(data, bins=bins, range=(low, high))
    return wrap(counts.astype(data.dtype))


def _triangle_indices(name, keep):
    def op(row, col, offset=0, *, dtype=dtypes.int64, device="cpu"):
        from ..factories import ones

        mask = keep(ones(row, col, dtype=dtypes.bool_, device=device), offset)._data
        return wrap(array_module(mask).stack(array_module(mask).nonzero(mask)).astype(dtypes.as_dtype(dtype)))

    op.__name__ = name
    return op


tril_indices = _triangle_indices("tril_indices", tril)
triu_indices = _triangle_indices("triu_indices", triu)

__all__ = ["Tensor", "bincount", "bucketize", "histc", "searchsorted", "tril_indices", "triu_indices"]
