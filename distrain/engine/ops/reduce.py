"""Reductions: sum, mean, max, min, var, std, prod, logsumexp, argmax, argmin.

Backward of a reduction broadcasts the gradient back over the reduced axes; `_unreduce`
restores the kept dimensions first so the broadcast lines up.
"""
from __future__ import annotations

from collections import namedtuple

import numpy

from ...errors import DTypeError, ShapeError
from .. import dtypes
from ..backend import array_module
from .core import grad_state, normalize_dim, normalize_dims, record, wrap

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _kept_shape(shape, axes):
    return tuple(1 if (axes is None or i in axes) else n for i, n in enumerate(shape))


def _unreduce(grad, shape, axes, keepdim):
    """Broadcast a reduction's gradient back to the input's shape (a view, no copy)."""
    if grad._data.size == 1 and not grad_state.enabled:
        # The gradient of a full reduction (a loss): one fill beats broadcast_to's overhead.
        # (dtype as the NumPy dtype: NumPy takes distrain's through a slow lookup, 3 us a call)
        data = grad._data
        return wrap(array_module(data).full(shape, data.reshape(()), dtype=data.dtype))
    if not keepdim:
        grad = grad.reshape(_kept_shape(shape, axes))
    return grad.expand(shape)


def _axis(axes):
    return axes if axes is None or len(axes) != 1 else axes[0]


def _count(shape, axes):
    count = 1
    for i, n in enumerate(shape):
        if axes is None or i in axes:
            count *= n
    return count


def _sum_or_mean(name):
    """sum and mean: one reduction whose backward spreads the gradient (divided by the
    count for mean) back over the reduced elements."""
    is_mean = name == "mean"

    def op(input, dim=None, keepdim=False, dtype=None):
        data = input._data
        if dtype is None and data.dtype.kind in "biu":
            if is_mean:
                raise DTypeError(f"mean() needs a floating-point tensor, got dtype {data.dtype}; convert with "
                                 ".float() or pass dtype=")
            dtype = dtypes.int64  # PyTorch sums integers and bools as int64
        axes = normalize_dims(dim, data.ndim, name)
        dtype = None if dtype is None else dtypes.as_dtype(dtype)
        if is_mean and _count(data.shape, axes) == 0:  # NaN, as in PyTorch, without NumPy's empty-slice warning
            with numpy.errstate(invalid="ignore", divide="ignore"):
                out = data.sum(axis=_axis(axes), keepdims=keepdim, dtype=dtype) / 0
        else:
            out = (data.mean if is_mean else data.sum)(axis=_axis(axes), keepdims=keepdim, dtype=dtype)
        result = wrap(out)
        if grad_state.enabled and input._requires_grad:
            record(name.capitalize(), backward_fn, (input,), (result,), args=(data.shape, axes, keepdim))
        return result

    def backward_fn(node, grad):
        shape, axes, keepdim = node.args
        if is_mean:
            grad = grad / float(_count(shape, axes))
        return (_unreduce(grad, shape, axes, keepdim),)

    op.__name__ = name
    return op


sum = _sum_or_mean("sum")
mean = _sum_or_mean("mean")


def _extreme(name, array_reduce, array_arg):
    """max/min: the whole tensor (gradient split among ties) or along a dim (values, indices)."""

    def op(input, dim=None, keepdim=False):
        from .elementwise import maximum, minimum

        if hasattr(dim, "_data"):  # x.max(other_tensor) is the elementwise form
            return (maximum if name == "max" else minimum)(input, dim)
        data = input._data
        if data.size == 0:
            raise ShapeError(f"{name}(): cannot reduce an empty tensor of shape {tuple(data.shape)}")
        xp = array_module(data)
        if dim is None:
            result = wrap(array_reduce(data))
            if grad_state.enabled and input._requires_grad:
                record(name.capitalize(), _all_backward, (input,), (result,), saved=(input, result))
            return result
        if data.ndim == 0:  # one element: it is the extreme, at index 0
            normalize_dim(dim, 0, name)
            from .shape import clone

            return ValuesIndices(clone(input), wrap(xp.zeros((), dtype=dtypes.int64)))
        (axis,) = normalize_dims(dim, data.ndim, name)
        indices = xp.expand_dims(array_arg(data, axis=axis), axis)
        values = xp.take_along_axis(data, indices, axis=axis)
        if not keepdim:
            values = values.squeeze(axis)
        result = wrap(values)
        if grad_state.enabled and input._requires_grad:
            record(name.capitalize(), _dim_backward, (input,), (result,), args=(data.shape, axis, indices, keepdim))
        return ValuesIndices(result, wrap(indices if keepdim else indices.squeeze(axis)))

    def _all_backward(node, grad):
        x, result = node.saved_tensors
        ties = (x == result)
        return (grad * ties / ties.sum(),)

    def _dim_backward(node, grad):
        shape, axis, indices, keepdim = node.args
        xp = array_module(indices)
        hit = xp.zeros(shape, dtype=bool)
        xp.put_along_axis(hit, indices, True, axis=axis)
        if not keepdim:
            grad = grad.unsqueeze(axis)
        return (grad * wrap(hit),)

    op.__name__ = name
    return op


max = _extreme("max", lambda a: a.max(), lambda a, axis: a.argmax(axis=axis))
min = _extreme("min", lambda a: a.min(), lambda a, axis: a.argmin(axis=axis))


def _over_dims(extreme):
    """amax / amin: the extreme over all, one, or several dims (the reduced dims moved last and
    flattened, so that one `extreme(..., dim=-1)` covers them)."""

    def op(input, dim=None, keepdim=False):
        if dim is None or (isinstance(dim, (tuple, list)) and not dim):
            out = extreme(input)
            return out.reshape((1,) * input.ndim) if keepdim else out
        axes = normalize_dims(dim, input.ndim, extreme.__name__.replace("m", "am", 1))
        if axes is None:  # a 0-d tensor
            return extreme(input)
        if len(axes) == 1:
            return extreme(input, axes[0], keepdim).values
        rest = [d for d in range(input.ndim) if d not in axes]
        moved = input.permute(rest + list(axes))
        out = extreme(moved.reshape(tuple(input.shape[d] for d in rest) + (-1,)), -1).values
        return out.reshape(_kept_shape(input.shape, axes)) if keepdim else out

    return op


amax = _over_dims(max)
amin = _over_dims(min)


def argmax(input, dim=None, keepdim=False):
    """Index of the largest element (of the flattened tensor when dim is None); no gradient."""
    return _arg(input, dim, keepdim, "argmax")


def argmin(input, dim=None, keepdim=False):
    return _arg(input, dim, keepdim, "argmin")


def _arg(input, dim, keepdim, name):
    data = input._data
    if data.size == 0 and (dim is None or data.shape[normalize_dim(dim, data.ndim, name)] == 0):
        raise ShapeError(f"{name}(): cannot reduce over an empty dimension (shape {tuple(data.shape)}, dim {dim}); "
                         "an empty tensor has no largest or smallest element")
    if dim is None:
        out = getattr(data, name)()
        return wrap(out.reshape((1,) * data.ndim) if keepdim else out).long()
    if data.ndim == 0:
        normalize_dim(dim, 0, name)
        return wrap(array_module(data).zeros((), dtype=dtypes.int64))
    (axis,) = normalize_dims(dim, data.ndim, name)
    out = getattr(data, name)(axis=axis)
    return wrap(array_module(data).expand_dims(out, axis) if keepdim else out).long()


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance with Bessel's correction by default (correction=1, as in PyTorch)."""
    correction = _correction(unbiased, correction)
    data = input._data
    axes = normalize_dims(dim, data.ndim, "var")
    out = data.var(axis=_axis(axes), ddof=correction, keepdims=keepdim)
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Var", _var_backward, (input,), (result,), saved=(input,), args=(axes, keepdim, correction))
    return result


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def _var_backward(node, grad):
    (x,) = node.saved_tensors
    axes, keepdim, correction = node.args
    shape = tuple(x.shape)
    centered = x - x.mean(dim=axes, keepdim=True)
    scale = 2.0 / (_count(shape, axes) - correction)
    return (_unreduce(grad, shape, axes, keepdim) * centered * scale,)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    from .elementwise import sqrt

    return sqrt(var(input, dim, unbiased, keepdim, correction=correction))


def prod(input, dim=None, keepdim=False, dtype=None):
    data = input._data
    axes = normalize_dims(dim, data.ndim, "prod")
    if dtype is None and data.dtype.kind in "biu":
        dtype = dtypes.int64
    out = data.prod(axis=_axis(axes), keepdims=keepdim, dtype=None if dtype is None else dtypes.as_dtype(dtype))
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Prod", _prod_backward, (input,), (result,), saved=(input,), args=(axes, keepdim))
    return result


def _prod_backward(node, grad):
    """d prod / d x_i is the product of all other elements: exclusive prefix times suffix
    products, exact even when some elements are zero (where prod / x_i would divide by 0)."""
    (x,) = node.saved_tensors
    axes, keepdim = node.args
    data = x._data
    xp = array_module(data)
    shape = data.shape
    if grad_state.enabled:
        return (_unreduce(grad, shape, axes, keepdim) * _product_of_others(x, axes),)
    if axes is None:
        flat = data.reshape(1, -1)
        axis = 1
    else:
        (axis,) = axes
        flat = data
    ones_shape = list(flat.shape)
    ones_shape[axis] = 1
    ones = xp.ones(ones_shape, dtype=data.dtype)
    before = xp.cumprod(xp.concatenate([ones, xp.delete(flat, -1, axis=axis)], axis=axis), axis=axis)
    after = xp.flip(xp.cumprod(xp.flip(xp.concatenate([xp.delete(flat, 0, axis=axis), ones], axis=axis), axis), axis=axis), axis)
    others = wrap((before * after).reshape(shape))
    return (_unreduce(grad, shape, axes, keepdim) * others,)


def _product_of_others(x, axes):
    """prod_{j != i} x_j from differentiable ops (for create_graph): an (n, n) matrix per
    slice whose row i holds the slice with x_i replaced by 1, multiplied along its rows."""
    from .elementwise import where

    shape = tuple(x.shape)
    moved = x.reshape(-1) if axes is None else x.transpose(axes[0], -1)
    n = moved.shape[-1]
    eye = wrap(array_module(x._data).eye(n, dtype=bool))
    rows = where(eye, 1.0, moved.unsqueeze(-2).expand(tuple(moved.shape[:-1]) + (n, n)))
    others = prod(rows, dim=-1)
    return others.reshape(shape) if axes is None else others.transpose(axes[0], -1)


def logsumexp(input, dim, keepdim=False):
    """log(sum(exp(x))) over `dim`, computed stably by factoring out the maximum."""
    data = input._data
    xp = array_module(data)
    axes = normalize_dims(dim, data.ndim, "logsumexp")
    peak = data.max(axis=_axis(axes), keepdims=True)
    peak = xp.where(xp.isfinite(peak), peak, 0)
    with numpy.errstate(divide="ignore"):  # a slice of all -inf has logsumexp -inf, as in PyTorch
        out = xp.log(xp.exp(data - peak).sum(axis=_axis(axes), keepdims=True)) + peak
    if not keepdim:
        out = out.reshape(tuple(n for i, n in enumerate(data.shape) if i not in axes))
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Logsumexp", _logsumexp_backward, (input,), (result,), saved=(input, result), args=(axes, keepdim))
    return result


def _logsumexp_backward(node, grad):
    from .elementwise import exp

    x, result = node.saved_tensors
    axes, keepdim = node.args
    shape = tuple(x.shape)
    return (_unreduce(grad, shape, axes, keepdim) * exp(x - _unreduce(result, shape, axes, keepdim)),)


def all(input, dim=None, keepdim=False):
    axes = normalize_dims(dim, input._data.ndim, "all")
    return wrap(input._data.all(axis=_axis(axes), keepdims=keepdim))


def any(input, dim=None, keepdim=False):
    axes = normalize_dims(dim, input._data.ndim, "any")
    return wrap(input._data.any(axis=_axis(axes), keepdims=keepdim))
