"""distrain.nn.utils: whole-model gradient and parameter helpers (clipping, vector views, packing).

Reached as `distrain.nn.utils` (PyTorch's path); the file is named for what it holds.
Norms are accumulated in float64 so that clipping a float16/float32 model does not
overflow or lose the small gradients' contribution.
"""
from __future__ import annotations

import functools
import math

import numpy

from ...errors import DistrainError
from ..autograd.grad_mode import no_grad
from ..backend import array_module
from ..flat import FlatParameters, pack_parameters
from ..ops.value_checks import require_range
from ..tensor import Tensor, _make


def _with_grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p._grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale all gradients together so that their joint norm is at most max_norm; returns the norm.

    Example::

        loss.backward()
        distrain.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
    """
    params = _with_grads(parameters)
    if not params:
        return _make(numpy.asarray(0.0, dtype=numpy.float32))
    norm_type = float(norm_type)
    arrays = [p._grad._data for p in params]
    xp = array_module(arrays[0])
    # arrays throughout, no Python floats: a static graph (distrain.jit) recomputes the norm on every replay
    if norm_type == math.inf:
        norms = [xp.abs(a).max().astype(numpy.float64) for a in arrays if a.size]
        total = functools.reduce(xp.maximum, norms) if norms else xp.asarray(0.0)
    else:
        total = sum((xp.abs(a.astype("float64", copy=False)) ** norm_type).sum() for a in arrays) ** (1.0 / norm_type)
    if error_if_nonfinite:
        require_range(xp.isfinite(total), True, None, DistrainError, "clip_grad_norm_: the total norm of order "
                      f"{norm_type} of the gradients is not finite; pass error_if_nonfinite=False to clip anyway")
    # as PyTorch: scale by min(max_norm / (norm + 1e-6), 1) always (times 1.0 leaves a gradient as it is)
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0).astype(arrays[0].dtype)
    with no_grad():
        for p in params:
            p._grad._data *= scale
            p._grad._version_counter[0] += 1
    return _make(xp.asarray(total, dtype=arrays[0].dtype))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    for p in _with_grads(parameters):
        xp = array_module(p._grad._data)
        xp.clip(p._grad._data, -clip_value, clip_value, out=p._grad._data)
        p._grad._version_counter[0] += 1


def parameters_to_vector(parameters):
    """All parameters concatenated into one 1-D tensor (a copy)."""
    arrays = [p._data.reshape(-1) for p in parameters]
    if not arrays:
        raise DistrainError("parameters_to_vector: no parameters given")
    return _make(array_module(arrays[0]).concatenate(arrays))


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D `vec` into the parameters, in place."""
    offset = 0
    data = vec._data
    for p in parameters:
        size = p._data.size
        if offset + size > data.size:
            raise DistrainError(f"vector_to_parameters: vector of {data.size} elements is too short for the parameters")
        p._data[...] = data[offset:offset + size].reshape(p._data.shape)
        p._version_counter[0] += 1
        offset += size
    if offset != data.size:
        raise DistrainError(f"vector_to_parameters: vector has {data.size} elements, the parameters {offset}")


__all__ = ["FlatParameters", "clip_grad_norm_", "clip_grad_value_", "pack_parameters", "parameters_to_vector",
           "vector_to_parameters"]
