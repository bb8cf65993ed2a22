"""Reductions that skip NaN, count, or return two results: nansum, nanmean, count_nonzero,
median (and nanmedian), var_mean, std_mean.

nansum / nanmean are sum / mean of the input with NaN replaced by 0 (where keeps the
gradient at the NaN positions zero); median picks one element per slice (the lower of the
two middle ones, PyTorch's rule) and routes the gradient to it through gather.
"""
from __future__ import annotations

from .. import dtypes
from ..backend import array_module
from .core import Tensor, normalize_dim, normalize_dims, wrap
from .indexing import gather
from .reduce import ValuesIndices, mean, std, sum, var
from .sorting import _order


def _without_nan(input):
    from .elementwise import where

    return where(wrap(array_module(input._data).isnan(input._data)), 0.0, input)


def nansum(input, dim=None, keepdim=False, *, dtype=None):
    return sum(_without_nan(input), dim, keepdim, dtype=dtype)


def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    from .elementwise import where

    counted = (~input.isnan()).sum(dim=dim, keepdim=keepdim)
    empty = counted == 0  # an all-NaN slice: NaN, without dividing 0 by 0
    return where(empty, float("nan"), nansum(input, dim, keepdim, dtype=dtype) / where(empty, 1, counted))


def count_nonzero(input, dim=None):
    axes = normalize_dims(dim, input.ndim, "count_nonzero")
    return wrap((input._data != 0).sum(axis=axes).astype(dtypes.int64))


def _median(name, skip_nan):
    def op(input, dim=None, keepdim=False):
        data = input._data
        xp = array_module(data)
        if dim is None:
            flat = input.reshape(-1)
            values, _ = op(flat, 0)
            return values
        axis = normalize_dim(dim, data.ndim, name)
        if data.ndim == 0:
            return ValuesIndices(input * 1.0, wrap(xp.zeros((), dtype=dtypes.int64)))
        order = _order(data, axis, False, xp)
        if skip_nan:  # the middle of the non-NaN values (NaN sort last)
            valid = (~xp.isnan(data)).sum(axis=axis, keepdims=True)
            middle = xp.maximum((valid - 1) // 2, 0)
        else:  # NaN anywhere makes the median NaN: take the first NaN (sorted last) in that slice
            has_nan = xp.isnan(data).any(axis=axis, keepdims=True)
            count = data.shape[axis]
            first_nan = count - xp.isnan(data).sum(axis=axis, keepdims=True)
            middle = xp.where(has_nan, first_nan, (count - 1) // 2)
        indices = xp.take_along_axis(order, middle, axis=axis).astype(dtypes.int64)
        values = gather(input, axis, wrap(indices))
        indices = wrap(indices)
        if not keepdim:
            values, indices = values.squeeze(axis), indices.squeeze(axis)
        return ValuesIndices(values, indices)

    op.__name__ = name
    return op


median = _median("median", skip_nan=False)
nanmedian = _median("nanmedian", skip_nan=True)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(var, mean) over the same dims, as a plain tuple (PyTorch's)."""
    return (var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim))


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return (std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim))


__all__ = ["Tensor", "count_nonzero", "median", "nanmean", "nanmedian", "nansum", "std_mean", "var_mean"]
