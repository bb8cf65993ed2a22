"""Running reductions along a dim: cumsum, cumprod (integers and bools accumulate in int64, as in
PyTorch), cummax, cummin, logcumsumexp.

cumsum's backward is the reversed running sum of the gradient (each input element
contributes to every output from its position on). cumprod's is the reversed running sum
of grad * out divided by the input, where the input has no zero; with zeros that quotient
is undefined and the exact product of the other elements is formed instead.
"""
from __future__ import annotations

from .. import dtypes
from ..backend import array_module
from .core import Tensor, grad_state, normalize_dim, record, wrap
from .indexing import gather
from .reduce import ValuesIndices


def _accumulate(name, array_fn, backward):
    node_name = name.capitalize()

    def op(input, dim, *, dtype=None):
        data = input._data
        axis = normalize_dim(dim, data.ndim, name)
        if dtype is not None:
            data = data.astype(dtypes.as_dtype(dtype), copy=False)
        elif data.dtype.kind in "biu":
            data = data.astype(dtypes.int64)
        out = array_fn(array_module(data), data.reshape(1) if data.ndim == 0 else data, axis).reshape(data.shape)
        result = wrap(out)
        if grad_state.enabled and input._requires_grad:
            record(node_name, backward_fn, (input,), (result,), saved=(input, result), args=axis)
        return result

    def backward_fn(node, grad):
        x, out = node.saved_tensors
        return (backward(grad, x, out, node.args).to(x.dtype),)

    op.__name__ = name
    return op


def _reverse_cumsum(tensor, axis):
    if tensor.ndim == 0:
        return tensor
    return cumsum(tensor.flip(axis), axis).flip(axis)


def _cumprod_backward(grad, x, out, axis):
    if x.ndim == 0:
        return grad
    if not bool((x == 0).any()):
        return _reverse_cumsum(grad * out, axis) / x
    return _cumprod_backward_with_zeros(grad, x, axis)


def _cumprod_backward_with_zeros(grad, x, axis):
    """d out_k / d x_i = prod_{j <= k, j != i} x_j (for i <= k): an (n, n) matrix per slice whose
    row i is the slice with x_i replaced by 1, run through cumprod and masked to k >= i."""
    from .elementwise import where

    moved = x.transpose(axis, -1)
    n = moved.shape[-1]
    xp = array_module(x._data)
    eye = wrap(xp.eye(n, dtype=bool))
    rows = where(eye, 1.0, moved.unsqueeze(-2).expand(tuple(moved.shape[:-1]) + (n, n)))
    partial = cumprod(rows, -1) * wrap(xp.triu(xp.ones((n, n), dtype=x.dtype)))  # row i, column k >= i
    grad_moved = grad.transpose(axis, -1).unsqueeze(-2)
    return (partial * grad_moved).sum(-1).transpose(axis, -1)


cumsum = _accumulate("cumsum", lambda xp, data, axis: xp.cumsum(data, axis=axis),
                     lambda grad, x, out, axis: _reverse_cumsum(grad, axis))
cumprod = _accumulate("cumprod", lambda xp, data, axis: xp.cumprod(data, axis=axis), _cumprod_backward)



def _running_extreme(name, accumulate):
    """cummax / cummin: (values, int64 indices) of the running extreme; a tie moves the index to
    the later element (PyTorch's rule). The values are read with gather, whose backward routes
    each gradient to the element that holds the extreme."""

    def op(input, dim):
        data = input._data
        axis = normalize_dim(dim, data.ndim, name)
        xp = array_module(data)
        flat = data.reshape(1) if data.ndim == 0 else data
        running = getattr(xp, accumulate).accumulate(flat, axis=axis)
        shape = [1] * flat.ndim
        shape[axis] = flat.shape[axis]
        positions = xp.arange(flat.shape[axis]).reshape(shape)
        indices = xp.maximum.accumulate(xp.where(flat == running, positions, 0), axis=axis).astype(dtypes.int64)
        values = gather(input if data.ndim else input.reshape(1), axis, wrap(indices))
        return ValuesIndices(values.reshape(data.shape), wrap(indices.reshape(data.shape)))

    op.__name__ = name
    return op


cummax = _running_extreme("cummax", "maximum")
cummin = _running_extreme("cummin", "minimum")


def logcumsumexp(input, dim):
    """log(cumsum(exp(x))) along dim, as a running logaddexp (no overflow, no underflow to -inf)."""
    data = input._data
    axis = normalize_dim(dim, data.ndim, "logcumsumexp")
    flat = data.reshape(1) if data.ndim == 0 else data
    result = wrap(array_module(data).logaddexp.accumulate(flat, axis=axis).reshape(data.shape))
    if grad_state.enabled and input._requires_grad:
        record("Logcumsumexp", _logcumsumexp_backward, (input,), (result,), saved=(input, result), args=axis)
    return result


def _logcumsumexp_backward(node, grad):
    """d out_k / d x_j = exp(x_j - out_k) for j <= k. The sum over k of grad_k exp(x_j - out_k) is
    taken in the log domain, the positive and negative parts of the gradient apart (PyTorch's way),
    so that neither exp(x_j) nor exp(-out_k) is ever formed."""
    from .elementwise import where

    x, out = node.saved_tensors
    if x.ndim == 0:
        return (grad,)
    axis = node.args
    limits = array_module(x._data).finfo(x.dtype)
    log_of_zero = float(limits.min) / 4  # exp() of it is 0, yet it stays finite (-inf - -inf would be NaN)
    parts = []
    for sign in (1.0, -1.0):
        magnitude = grad * sign
        log_part = where(magnitude > 0, magnitude.clamp(min=float(limits.tiny)).log(), log_of_zero) - out
        parts.append((logcumsumexp(log_part.flip(axis), axis).flip(axis) + x).exp())
    return (parts[0] - parts[1],)


__all__ = ["Tensor", "cummax", "cummin", "cumprod", "cumsum", "logcumsumexp"]
