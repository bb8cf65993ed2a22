"""Calls that a loaded graph makes only after checking their arguments.

`as_strided(x, shape, strides)` makes a view of any memory the strides reach: distrain's
convolution and pooling use it with strides that stay inside `x` (conv.sliding_windows),
but a forged graph file could ask for a view reaching past `x`'s buffer and read or
write memory it does not own (NOTE [ Names a saved graph may use ] in portable_names.py).
So a loaded graph calls `as_strided_within` instead, which refuses any view whose bytes
do not lie within the bytes `x` spans. Saving maps it back to the original name.
"""
from __future__ import annotations

from .errors import SerializationError


def _byte_span(shape, strides, itemsize):
    """(lowest, highest + itemsize) byte offsets an array of this layout touches, from its first element."""
    if any(extent == 0 for extent in shape):
        return 0, 0
    low = sum((extent - 1) * stride for extent, stride in zip(shape, strides) if stride < 0)
    high = sum((extent - 1) * stride for extent, stride in zip(shape, strides) if stride > 0)
    return low, high + itemsize


def checked(as_strided):
    """`as_strided` (NumPy's or CuPy's) that refuses views reaching outside their base (see above)."""

    def as_strided_within(x, shape=None, strides=None, **kwargs):
        shape = tuple(x.shape) if shape is None else tuple(int(extent) for extent in shape)
        strides = tuple(x.strides) if strides is None else tuple(int(stride) for stride in strides)
        low, high = _byte_span(shape, strides, x.itemsize)
        base_low, base_high = _byte_span(x.shape, x.strides, x.itemsize)
        if len(shape) != len(strides) or any(extent < 0 for extent in shape) or \
                (high > low and (low < base_low or high > base_high)):
            raise SerializationError(
                f"distrain.jit: the loaded graph asks as_strided for a view of shape {shape} and strides {strides} "
                f"of an array of shape {tuple(x.shape)} and strides {tuple(x.strides)}, which reaches outside that "
                "array's memory; distrain never saves such a call: the graph file was changed, do not use it.")
        return as_strided(x, shape, strides, **kwargs)

    as_strided_within.checks = as_strided
    return as_strided_within


def _checked_versions():
    import numpy.lib.stride_tricks

    return {numpy.lib.stride_tricks.as_strided: checked(numpy.lib.stride_tricks.as_strided)}


_CHECKED = {}


def checked_version(function, name):
    """The function a loaded graph calls for `function` (resolved from `name`): itself, or its checked version."""
    if not _CHECKED:
        _CHECKED.update(_checked_versions())
    found = _CHECKED.get(function)
    if found is None and name.endswith(".lib.stride_tricks.as_strided"):  # CuPy's, met on a GPU graph
        found = _CHECKED[function] = checked(function)
    return function if found is None else found


def original(function):
    """What a checked call stands for (for saving a loaded graph again)."""
    return getattr(function, "checks", function)
