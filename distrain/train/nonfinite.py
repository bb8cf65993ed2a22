"""Non-finite gradients: one cheap check per step, and the name of the first culprit when it fails.

The check runs on the averaged gradients, which every rank holds identically after the
allreduce, so every rank reaches the same verdict without another message (a non-finite
loss makes the gradients non-finite too). One sum per flat gradient buffer suffices: a NaN
or an infinity anywhere makes the sum non-finite; only an overflow of finite values can
make a false alarm, and then the scan for the culprit says so.
"""
from __future__ import annotations

import math

import numpy

from ..errors import DistrainError


class NonFiniteError(DistrainError, FloatingPointError):
    """A step produced a non-finite gradient and the configuration says to stop."""


def gradients_finite(named_parameters) -> bool:
    """Whether every gradient is finite: one sum per flat gradient buffer, per parameter where it cannot be trusted."""
    flats, loose, partial = {}, [], set()
    for _, parameter in named_parameters:
        flat = getattr(parameter, "_flat", None)
        if flat is not None and flat.grad_is_flat(parameter):
            flats[id(flat)] = flat
        elif parameter.grad is not None:
            loose.append(parameter.grad._data)
        if flat is not None and not flat.grad_is_flat(parameter):
            partial.add(id(flat))  # a stale slice (no gradient this step): sum its neighbours one by one
    arrays = loose + [flat.grad for key, flat in flats.items() if key not in partial]
    arrays += [parameter.grad._data for _, parameter in named_parameters
               if id(getattr(parameter, "_flat", None)) in partial and parameter.grad is not None]
    return all(math.isfinite(float(array.sum(dtype="float64"))) for array in arrays)


def first_nonfinite(named_parameters) -> str:
    """The name of the first parameter (in the model's order) whose gradient holds a NaN or an infinity."""
    for name, parameter in named_parameters:
        if parameter.grad is not None and not bool(numpy.isfinite(parameter.grad.detach().cpu().numpy()).all()):
            return name
    return "(none: the sum of the gradients overflowed)"
