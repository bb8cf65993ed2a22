"""Contractions under their own names: mv, inner, vdot, tensordot, trace, kron, cross, cdist.

Each is einsum, matmul or elementwise arithmetic, whose gradients they inherit.
"""
from __future__ import annotations

import string

from ...errors import ArgumentError, ShapeError
from .core import Tensor, normalize_dim
from .einsum import einsum
from .linalg import matmul


def mv(input, vec):
    if input.ndim != 2 or vec.ndim != 1 or input.shape[1] != vec.shape[0]:
        raise ShapeError(f"mv: expected a (n, m) matrix and an (m,) vector, got shapes {tuple(input.shape)} and "
                         f"{tuple(vec.shape)}")
    return matmul(input, vec)


def inner(input, other):
    """Sum over the last dims of both (a dot product for vectors; a * b for numbers)."""
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    if input.shape[-1] != other.shape[-1]:
        raise ShapeError(f"inner: the last dims of shapes {tuple(input.shape)} and {tuple(other.shape)} must match")
    return tensordot(input, other, ([-1], [-1]))


def vdot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise ShapeError(f"vdot: expected two 1-D tensors, got shapes {tuple(input.shape)} and {tuple(other.shape)}")
    return inner(input, other)


def tensordot(a, b, dims=2):
    """Sum over the last `dims` dims of a and the first of b, or over the dim lists dims = (dims_a, dims_b)."""
    if isinstance(dims, int):
        if dims < 0 or dims > min(a.ndim, b.ndim):
            raise ArgumentError(f"tensordot: dims {dims} must be in [0, {min(a.ndim, b.ndim)}] for shapes "
                                f"{tuple(a.shape)} and {tuple(b.shape)}")
        dims_a, dims_b = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        dims_a, dims_b = ([d] if isinstance(d, int) else list(d) for d in dims)
    dims_a = [normalize_dim(d, a.ndim, "tensordot") for d in dims_a]
    dims_b = [normalize_dim(d, b.ndim, "tensordot") for d in dims_b]
    if len(dims_a) != len(dims_b) or any(a.shape[i] != b.shape[j] for i, j in zip(dims_a, dims_b)):
        raise ShapeError(f"tensordot: dims {dims_a} of shape {tuple(a.shape)} and {dims_b} of shape {tuple(b.shape)} "
                         "must pair up with equal sizes")
    letters = iter(string.ascii_letters)
    a_term = [next(letters) for _ in range(a.ndim)]
    b_term = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(dims_a, dims_b):
        b_term[j] = a_term[i]
    output = [c for i, c in enumerate(a_term) if i not in dims_a] + [c for j, c in enumerate(b_term) if j not in dims_b]
    return einsum(f"{''.join(a_term)},{''.join(b_term)}->{''.join(output)}", a, b)


def trace(input):
    if input.ndim != 2:
        raise ShapeError(f"trace: expected a 2-D matrix, got shape {tuple(input.shape)}")
    return input.diagonal().sum()


def kron(input, other):
    """The Kronecker product: every element of input times the whole of other, laid out in blocks."""
    ndim = max(input.ndim, other.ndim)
    a = input.reshape((1,) * (ndim - input.ndim) + tuple(input.shape))
    b = other.reshape((1,) * (ndim - other.ndim) + tuple(other.shape))
    interleaved_a, interleaved_b = [], []
    for n, m in zip(a.shape, b.shape):
        interleaved_a += [n, 1]
        interleaved_b += [1, m]
    product = a.reshape(interleaved_a) * b.reshape(interleaved_b)
    return product.reshape(tuple(n * m for n, m in zip(a.shape, b.shape)))


def cross(input, other, dim=None):
    """The 3-D cross product along `dim` (default: linalg.cross's -1)."""
    axis = normalize_dim(-1 if dim is None else dim, input.ndim, "cross")
    if input.shape[axis] != 3 or tuple(input.shape) != tuple(other.shape):
        raise ShapeError(f"cross: expected shapes with size 3 at dim {axis}, and equal, got {tuple(input.shape)} and "
                         f"{tuple(other.shape)}")
    a = [input.select(axis, i) for i in range(3)]
    b = [other.select(axis, i) for i in range(3)]
    from .shape import stack

    return stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]], axis)


def cdist(x1, x2, p=2.0):
    """Pairwise p-norm distances between the rows of x1 (.., P, M) and x2 (.., R, M): shape (.., P, R)."""
    from .norms import vector_norm

    if x1.ndim < 2 or x2.ndim < 2 or x1.shape[-1] != x2.shape[-1]:
        raise ShapeError(f"cdist: expected (.., P, M) and (.., R, M) with the same M, got shapes {tuple(x1.shape)} "
                         f"and {tuple(x2.shape)}")
    return vector_norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), p, dim=-1)


__all__ = ["Tensor", "cdist", "cross", "inner", "kron", "mv", "tensordot", "trace", "vdot"]
