"""Norms: linalg.vector_norm, linalg.matrix_norm, linalg.norm, and torch.norm / Tensor.norm.

Every norm reduces to `vector_norm` (one op with its own backward) and, for the induced
matrix norms ord=1 / inf, to sums and maxima of absolute values. vector_norm has a backward
of its own because the composed one would divide by zero at x = 0, where PyTorch's
gradient (and this one) is 0.
"""
from __future__ import annotations

import math

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from .core import Tensor, grad_state, normalize_dim, normalize_dims, record, wrap
from .reduce import _axis, _unreduce


def _check_order(op_name, ord):
    if isinstance(ord, bool) or not isinstance(ord, (int, float)):
        raise ArgumentError(f"{op_name}: ord must be a number (inf, -inf, 0, 1, 2, ...), got {ord!r}")


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """(sum |x|^ord)^(1/ord) over `dim` (all elements by default); ord inf / -inf are max / min |x|, 0 counts nonzeros."""
    _check_order("vector_norm", ord)
    if x.dtype.kind != "f":
        raise ArgumentError(f"vector_norm: expected a floating-point tensor, got dtype {x.dtype}")
    if dtype is not None:
        x = x.to(dtype)
    data = x._data
    xp = array_module(data)
    axes = normalize_dims(dim, data.ndim, "vector_norm")
    axis = _axis(axes)
    magnitude = xp.abs(data)
    if ord == math.inf:
        out = magnitude.max(axis=axis, keepdims=keepdim)
    elif ord == -math.inf:
        out = magnitude.min(axis=axis, keepdims=keepdim)
    elif ord == 0:
        out = (magnitude != 0).sum(axis=axis, keepdims=keepdim).astype(data.dtype)
    elif ord == 1:
        out = magnitude.sum(axis=axis, keepdims=keepdim)
    elif ord == 2:
        out = xp.sqrt((data * data).sum(axis=axis, keepdims=keepdim))
    else:
        out = (magnitude ** ord).sum(axis=axis, keepdims=keepdim) ** (1.0 / ord)
    result = wrap(xp.asarray(out, dtype=data.dtype))
    if grad_state.enabled and x._requires_grad:
        record("LinalgVectorNorm", _vector_norm_backward, (x,), (result,), saved=(x, result), args=(ord, axes, keepdim))
    return result


def _vector_norm_backward(node, grad):
    from .elementwise import where

    x, norm = node.saved_tensors
    ord, axes, keepdim = node.args
    shape = tuple(x.shape)
    grad = _unreduce(grad, shape, axes, keepdim)
    if ord == 0:  # a count of nonzeros: flat almost everywhere
        return (grad * 0.0,)
    norm = _unreduce(norm, shape, axes, keepdim)
    if ord in (math.inf, -math.inf):  # the gradient is shared among the elements that reach the extreme
        hits = (x.abs() == norm).to(x.dtype)
        return (grad * x.sign() * hits / _unreduce(hits.sum(dim=axes, keepdim=True), shape, axes, True),)
    if ord == 1:
        return (grad * x.sign(),)
    safe_norm = where(norm == 0, 1.0, norm)
    if ord == 2:
        return (where(norm == 0, 0.0, grad * x / safe_norm),)
    scale = x.sign() * x.abs() ** (ord - 1)
    return (where(norm == 0, 0.0, grad * scale / safe_norm ** (ord - 1)),)


def _matrix_dims(op_name, ndim, dim):
    if not isinstance(dim, (tuple, list)) or len(dim) != 2:
        raise ArgumentError(f"{op_name}: dim must be a pair of dimensions for a matrix norm, got {dim!r}")
    rows, columns = (normalize_dim(d, ndim, op_name) for d in dim)
    if rows == columns:
        raise ShapeError(f"{op_name}: dim {tuple(dim)} names the same dimension twice")
    return rows, columns


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """'fro' (the root of the sum of squares), or the induced norms 1 / -1 (max / min column sum of |A|)
    and inf / -inf (max / min row sum). 'nuc' and 2 / -2 need singular values and are not supported."""
    if A.ndim < 2:
        raise ShapeError(f"matrix_norm: A must have at least 2 dimensions, got shape {tuple(A.shape)}")
    rows, columns = _matrix_dims("matrix_norm", A.ndim, dim)
    if ord == "fro":
        return vector_norm(A, 2, (rows, columns), keepdim, dtype=dtype)
    if ord not in (1, -1, math.inf, -math.inf):
        raise ArgumentError(f"matrix_norm: ord must be 'fro', 1, -1, inf or -inf, got {ord!r} "
                            "('nuc', 2 and -2 need singular values, which distrain does not compute)")
    if dtype is not None:
        A = A.to(dtype)
    summed, across = (rows, columns) if ord in (1, -1) else (columns, rows)
    sums = A.abs().sum(dim=summed, keepdim=True)
    out = sums.amax(dim=across, keepdim=True) if ord > 0 else sums.amin(dim=across, keepdim=True)
    return out if keepdim else out.squeeze((rows, columns))


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """linalg.norm: a vector norm for 1-D input or an int dim, a matrix norm for 2-D input or a dim pair;
    ord=None is the 2-norm of the flattened input (the Frobenius norm of a matrix)."""
    if ord is None:
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if isinstance(dim, int) or (isinstance(dim, (tuple, list)) and len(dim) == 1):
        return vector_norm(A, ord, dim, keepdim, dtype=dtype)
    if dim is None:
        if A.ndim == 1:
            return vector_norm(A, ord, None, keepdim, dtype=dtype)
        if A.ndim != 2:
            raise ShapeError(f"linalg.norm: with ord {ord!r} and no dim, A must be 1-D or 2-D, got shape "
                             f"{tuple(A.shape)}")
        dim = (0, 1)
    return matrix_norm(A, ord, dim, keepdim, dtype=dtype)


def tensor_norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """torch.norm / Tensor.norm: p='fro' or a number is a vector norm over `dim` (all elements by
    default); p='fro' with a dim pair is the Frobenius norm of those planes (the same numbers)."""
    if p == "fro":
        p = 2
    if p == "nuc":
        raise ArgumentError("norm: p='nuc' needs singular values, which distrain does not compute")
    return vector_norm(input, p, dim, keepdim, dtype=dtype)


def dist(input, other, p=2):
    """The p-norm of input - other (broadcast), over all elements."""
    return vector_norm(input - other, p)


__all__ = ["Tensor", "dist", "matrix_norm", "norm", "tensor_norm", "vector_norm"]
