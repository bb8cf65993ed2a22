"""When the optimizers' compiled updates (adam.py, sgd.py) apply, and how their loops see the arrays.

An optimizer's rule runs on a chunk of parameters (NOTE [ Optimizer chunks ]): the
parameter values, the gradient and the state arrays, all of one shape. The compiled
loops update them in place, element by element, so they take the arrays as 1-D views,
one numba signature whatever the parameters' shapes. They apply on the numba path when
every array is a C-contiguous NumPy array of the parameters' dtype (float32 or float64)
and shape; otherwise the optimizer's array code, which is their reference, runs.

These run once per chunk, so they check with plain loops (not any(generator), which
costs more than the loop of a small parameter's update).
"""
from __future__ import annotations

import numpy

from . import compiled_loops

COMPILED_DTYPES = (numpy.dtype("float32"), numpy.dtype("float64"))


def update_loops(module_name, arrays):
    """The module of compiled loops `distrain.engine.kernels.<module_name>` when they apply to `arrays`, else None."""
    dtype, shape = arrays[0].dtype, arrays[0].shape
    if dtype not in COMPILED_DTYPES:
        return None
    for array in arrays:
        if type(array) is not numpy.ndarray or array.dtype != dtype or array.shape != shape or \
                not array.flags.c_contiguous:
            return None
    return compiled_loops(module_name)  # None on the NumPy path; the arrays are NumPy's (checked above)


def flat(arrays):
    """The (C-contiguous) arrays as 1-D views."""
    if arrays[0].ndim == 1:
        return arrays
    return [array.reshape(-1) for array in arrays]


def scalars(values, like):
    """The Python floats `values` rounded to `like`'s dtype, as NumPy rounds the float in `array * 0.9` (NEP 50).

    One array for the loop, not a NumPy scalar per value: fewer objects to make and to
    type at each call.
    """
    return numpy.array(values, like.dtype)


__all__ = ["COMPILED_DTYPES", "flat", "scalars", "update_loops"]
