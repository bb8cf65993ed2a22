"""interpolate (F.interpolate / nn.Upsample): resize (N, C, *spatial) by nearest or linear sampling.

Every supported mode is separable: resizing an image is resizing each spatial axis in
turn. Along one axis, output position i reads input positions picked by PyTorch's
index rules (below) and mixes them with weights:

- nearest:       out[i] = in[min(floor(i * scale), size - 1)]
- nearest-exact: out[i] = in[min(floor((i + 0.5) * scale), size - 1)]
- linear:        out[i] = (1 - l) * in[i0] + l * in[i1], src = i * scale (align_corners) or
                 (i + 0.5) * scale - 0.5 clamped at 0; i0 = floor(src), i1 = min(i0 + 1, size - 1), l = src - i0

where scale is (size - 1) / (out - 1) with align_corners, 1 / scale_factor when a scale
factor was given (PyTorch samples with the factor itself, not the rounded sizes' ratio),
else size / out. Indices are computed in float32 for float32 tensors, as PyTorch's kernels
do, so the same pixels are picked. Each axis is then one or two gathers (`take_sorted`) and
a weighted sum, so the backward is the gathers' (an add of each output slice back onto its
source) and the weighted sum's. bilinear and trilinear are linear along 2 and 3 axes.
"""
from __future__ import annotations

import math

import numpy

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from .core import as_tensor_like, grad_state, record, wrap

# mode -> the input ranks it accepts (None: any of 3, 4, 5)
MODES = {"nearest": None, "nearest-exact": None, "linear": 3, "bilinear": 4, "trilinear": 5, "area": None}
LINEAR_MODES = ("linear", "bilinear", "trilinear")


def _sizes(input, size, scale_factor, recompute_scale_factor):
    """(output sizes, scale factors or Nones) per spatial axis, PyTorch's argument rules."""
    dims = input.ndim - 2
    spatial = tuple(input.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ArgumentError("interpolate: give exactly one of size and scale_factor "
                            f"(got size={size!r}, scale_factor={scale_factor!r})")
    if size is not None:
        if recompute_scale_factor:
            raise ArgumentError("interpolate: recompute_scale_factor is not meaningful with an explicit size")
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,) * dims
        if len(sizes) != dims or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            raise ShapeError(f"interpolate: size must be an int or {dims} int(s) for input of spatial size "
                             f"{list(spatial)}, got {size!r}")
        scales = (None,) * dims
    else:
        scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * dims
        if len(scales) != dims:
            raise ShapeError(f"interpolate: scale_factor must be a number or {dims} number(s) for input of spatial "
                             f"size {list(spatial)}, got {scale_factor!r}")
        if not all(s > 0 for s in scales):
            raise ArgumentError(f"interpolate: scale_factor must be positive, got {scale_factor!r}")
        sizes = tuple(math.floor(n * s) for n, s in zip(spatial, scales))
        if recompute_scale_factor:
            scales = (None,) * dims
    if min(sizes) <= 0:
        raise ShapeError(f"interpolate: the output size {sizes} of input {tuple(input.shape)} must be positive")
    return sizes, scales


def _scale(xp_float, size, out, scale_factor, align_corners):
    if align_corners:
        return xp_float((size - 1) / (out - 1)) if out > 1 else xp_float(0)
    if scale_factor is not None:
        return xp_float(1.0 / scale_factor)
    return xp_float(size) / xp_float(out)


def _nearest_index(size, out, scale_factor, exact, float_type):
    if not exact and out == size:
        return numpy.arange(out)
    if not exact and out == 2 * size:
        return numpy.arange(out) >> 1
    scale = _scale(float_type, size, out, scale_factor, False)
    positions = numpy.arange(out, dtype=float_type) + (float_type(0.5) if exact else float_type(0))
    return numpy.minimum(numpy.floor(positions * scale).astype(numpy.int64), size - 1)


def _linear_taps(size, out, scale_factor, align_corners, float_type):
    """(index0, index1, weight of index1) per output position along one axis."""
    scale = _scale(float_type, size, out, scale_factor, align_corners)
    positions = numpy.arange(out, dtype=float_type)
    if align_corners:
        source = positions * scale
    else:
        source = numpy.maximum(scale * (positions + float_type(0.5)) - float_type(0.5), float_type(0))
    index0 = numpy.minimum(numpy.floor(source).astype(numpy.int64), size - 1)
    index1 = numpy.minimum(index0 + 1, size - 1)
    weight1 = numpy.clip(source - index0, 0, 1).astype(float_type)
    return index0, index1, weight1


def take_sorted(input, axis, index):
    """input's slices along `axis` at the non-decreasing `index` (repeats allowed): a gather whose backward
    adds each output slice back onto its source.

    index_select would do, but its backward scatters with NumPy's add.at, ~10x slower than the
    resize itself. With sorted indices the repeats of one source are adjacent, so the backward
    runs in "rounds": round k adds every source's k-th copy with one plain indexed add (no
    source twice in a round, so no collision); rounds = the largest repeat, i.e. the scale
    factor rounded up, 2 for a 2x upsample.
    """
    data = input._data
    xp = array_module(data)
    result = wrap(xp.take(data, xp.asarray(index), axis=axis))
    if grad_state.enabled and input._requires_grad:
        first = numpy.searchsorted(index, index, side="left")
        copy_number = numpy.arange(index.shape[0]) - first
        rounds = [piece for k in range(int(copy_number.max()) + 1)
                  for piece in _strided_pieces(index[copy_number == k], numpy.flatnonzero(copy_number == k), xp)]
        record("TakeSorted", _take_sorted_backward, (input,), (result,), args=(data.shape, axis, index, rounds))
    return result


def _strided_pieces(sources, positions, xp, most=8):
    """One round's (sources, positions) as a few pairs of slices where both run in even steps (strided
    views: indexing with arrays copies and, on the innermost axis, is ~10x slower); as one pair of
    index arrays when the steps are irregular (scale factors like 2.3)."""
    pieces, start, count = [], 0, sources.shape[0]
    while start < count:
        end = start
        if start + 1 < count:
            source_step, position_step = sources[start + 1] - sources[start], positions[start + 1] - positions[start]
            end = start + 1
            while (end + 1 < count and sources[end + 1] - sources[end] == source_step
                   and positions[end + 1] - positions[end] == position_step):
                end += 1
        else:
            source_step = position_step = 1
        pieces.append((slice(int(sources[start]), int(sources[end]) + 1, int(source_step)),
                       slice(int(positions[start]), int(positions[end]) + 1, int(position_step))))
        if len(pieces) > most:
            return [(xp.asarray(sources), xp.asarray(positions))]
        start = end + 1
    return pieces


def _take_sorted_backward(node, grad):
    return (_add_back(grad, *node.args),)


def _add_back(grad, shape, axis, index, rounds):
    """The adjoint of take_sorted: a zero tensor of `shape` with each slice of grad added at its source."""
    data = grad._data
    xp = array_module(data)
    out = xp.zeros(shape, dtype=data.dtype)
    lead = (slice(None),) * axis
    for sources, positions in rounds:
        out[lead + (sources,)] += data[lead + (positions,)]
    result = wrap(out)
    if grad_state.enabled and grad._requires_grad:
        record("TakeSortedBackward", _add_back_backward, (grad,), (result,), args=(axis, index))
    return result


def _add_back_backward(node, grad):
    axis, index = node.args
    return (take_sorted(grad, axis, index),)


def _resample_axis(input, axis, taps):
    """Along `axis`: input[index0] alone, or (1 - w) input[index0] + w input[index1]."""
    if len(taps) == 1:
        return take_sorted(input, axis, taps[0])
    index0, index1, weight1 = taps
    shape = [1] * input.ndim
    shape[axis] = weight1.shape[0]
    first = take_sorted(input, axis, index0)
    second = take_sorted(input, axis, index1)
    return first + (second - first) * as_tensor_like(weight1.reshape(shape), input)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None,
                antialias=False):
    """Resize (N, C, L), (N, C, H, W) or (N, C, D, H, W) to `size` or by `scale_factor` (see the module docstring).

    Modes: nearest, nearest-exact, linear (3-D), bilinear (4-D), trilinear (5-D), area (adaptive average, 4-D).

    Example::

        >>> x = distrain.randn(1, 3, 8, 8)
        >>> distrain.nn.functional.interpolate(x, scale_factor=2, mode="bilinear").shape
        distrain.Size([1, 3, 16, 16])
    """
    if mode not in MODES:
        raise ArgumentError(f"interpolate: mode {mode!r} is not supported; distrain has {', '.join(MODES)}")
    if input.ndim not in (3, 4, 5):
        raise ShapeError(f"interpolate: expected a 3-D, 4-D or 5-D input (N, C, *spatial), got shape "
                         f"{tuple(input.shape)}; add the batch dimension with input.unsqueeze(0)")
    needed = MODES[mode]
    if needed is not None and input.ndim != needed:
        raise ShapeError(f"interpolate: got a {input.ndim}-D input of shape {tuple(input.shape)}, but {mode} mode "
                         f"needs a {needed}-D input")
    if align_corners is not None and mode not in LINEAR_MODES:
        raise ArgumentError("interpolate: align_corners option can only be set with the interpolating modes: "
                            "linear | bilinear | trilinear")
    if antialias:
        raise ArgumentError("interpolate: antialias=True is not supported; resize without it")
    if input._data.dtype.kind != "f":
        raise ShapeError(f"interpolate: expected a floating-point input, got {input.dtype}")
    sizes, scales = _sizes(input, size, scale_factor, recompute_scale_factor)
    if mode == "area":
        if input.ndim != 4:
            raise ShapeError(f"interpolate: area mode supports 4-D input here, got shape {tuple(input.shape)}")
        from .pooling import adaptive_avg_pool2d

        return adaptive_avg_pool2d(input, sizes)
    float_type = numpy.float64 if input._data.dtype == numpy.float64 else numpy.float32
    out = input
    for axis, (n, o, s) in enumerate(zip(input.shape[2:], sizes, scales), start=2):
        if mode in LINEAR_MODES:
            taps = _linear_taps(n, o, s, bool(align_corners), float_type)
        else:
            taps = (_nearest_index(n, o, s, mode == "nearest-exact", float_type),)
        out = _resample_axis(out, axis, taps)
    return out


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated alias of interpolate (as torch.nn.functional.upsample)."""
    return interpolate(input, size, scale_factor, mode, align_corners)


__all__ = ["interpolate", "upsample"]
