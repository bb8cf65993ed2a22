"""Max pooling 2d as two kernels: a forward that keeps which tap won, a backward that routes by it.

PyTorch's rule, which both implementations follow exactly (so they agree bit for bit):
a window's taps are visited in row-major order (i over the kernel rows, j over its
columns, dilation apart), skipping those in the padding; the first tap inside the
input starts the window, and a later tap replaces it when its value is greater or is
NaN. So ties go to the first maximum, a window holding NaN gives NaN and the last NaN
tap, and an all -inf window gives its first tap inside the input (never padding).

The forward saves, per output, the winning tap's number t = i * KW + j (uint8 when
the kernel has at most 255 taps: a quarter of an index's memory traffic). The backward
adds each output's gradient to its tap's input pixel, visiting outputs in row-major
order as PyTorch's backward does, so the sums where windows overlap (stride < kernel)
are rounded the same way. The reference reaches that order by adding per tap in
reverse: for one input pixel, a later tap belongs to an earlier output.

Arrays are handled as stacks of (H, W) planes in the input's memory order (layout.py);
see NOTE [ Compiled kernels ] (kernels/__init__.py) for the two paths and capture.
"""
from __future__ import annotations

import numpy

from ..backend import array_module
from . import compiled_loops, handed_to_recorder
from .layout import back_from, in_order

COMPILED_DTYPES = (numpy.dtype("float32"), numpy.dtype("float64"))


def tap_dtype(kernel):
    """uint8 for kernels of at most 255 taps, else int32."""
    return numpy.uint8 if kernel[0] * kernel[1] <= 255 else numpy.int32


def max_pool2d_forward(input, kernel, stride, padding, dilation, out_size):
    """(output, taps): the maximum of each window of NCHW `input` and the number of the tap that won.

    `out_size` is (OH, OW), from PyTorch's output-size rule (ceil_mode included); both
    results are NCHW, in `input`'s memory order.
    """
    handed, result = handed_to_recorder(max_pool2d_forward, (input, kernel, stride, padding, dilation, out_size))
    if handed:
        return result
    xp = array_module(input)
    order = _plane_order(input)
    planes = in_order(input, order)
    shape = planes.shape[:2] + tuple(out_size)
    best = xp.empty(shape, dtype=input.dtype)
    taps = xp.empty(shape, dtype=tap_dtype(kernel))
    loops = compiled_loops("max_pool_loops", input) if input.dtype in COMPILED_DTYPES else None
    if loops is not None and _is_2x2(kernel, stride, padding, dilation, planes.shape[2:], out_size):
        loops.max_pool2d_forward_2x2(planes, best, taps)
    else:  # other windows: NumPy's passes beat a general compiled loop (max_pool_loops' docstring)
        _forward_reference(xp, planes, kernel, stride, padding, dilation, best, taps)
    return back_from(best, order), back_from(taps, order)


def max_pool2d_backward(grad, taps, input_shape, kernel, stride, padding, dilation):
    """The input gradient of max_pool2d: each output's gradient added to its winning tap's pixel.

    `taps` is max_pool2d_forward's; the result is NCHW of `input_shape`, in `taps`' memory order.
    """
    handed, result = handed_to_recorder(max_pool2d_backward,
                                        (grad, taps, input_shape, kernel, stride, padding, dilation))
    if handed:
        return result
    xp = array_module(grad)
    order = _plane_order(taps)
    taps_planes = in_order(taps, order)
    grad_planes = in_order(grad, order)
    permuted_shape = tuple(input_shape[axis] for axis in order)
    loops = compiled_loops("max_pool_loops", grad) if grad.dtype in COMPILED_DTYPES else None
    if (loops is not None and _is_2x2(kernel, stride, padding, dilation, permuted_shape[2:], grad.shape[2:])
            and permuted_shape[2:] == tuple(2 * size for size in grad.shape[2:])):
        grad_input = xp.empty(permuted_shape, dtype=grad.dtype)  # the windows tile it: the loop writes every pixel
        bits = numpy.dtype(f"int{8 * grad.dtype.itemsize}")
        loops.max_pool2d_backward_2x2(grad_planes.view(bits), taps_planes, grad_input.view(bits),
                                      numpy.array(-0.0, grad.dtype).view(bits)[()])
        return back_from(grad_input, order)
    grad_input = xp.zeros(permuted_shape, dtype=grad.dtype)
    if loops is not None:
        loops.max_pool2d_backward(grad_planes, taps_planes, kernel[1], *stride, *padding, *dilation, grad_input)
    else:
        _backward_reference(xp, grad_planes, taps_planes, kernel, stride, padding, dilation, grad_input)
    return back_from(grad_input, order)


def _is_2x2(kernel, stride, padding, dilation, size, out_size):
    """Whether the windows are 2x2, stride 2, all inside the input: max_pool_loops' unrolled loop applies."""
    return (tuple(kernel) == tuple(stride) == (2, 2) and tuple(padding) == (0, 0) and tuple(dilation) == (1, 1)
            and 2 * out_size[0] <= size[0] and 2 * out_size[1] <= size[1])


def _plane_order(array):
    """(0, 1, 2, 3), or (1, 0, 2, 3) for the channel-major layout: H and W stay the last axes."""
    return (1, 0, 2, 3) if abs(array.strides[1]) > abs(array.strides[0]) else (0, 1, 2, 3)


def _padded_planes(xp, planes, kernel, stride, padding, dilation, out_size):
    """The planes with -inf around them, as far as the windows reach (ceil_mode's last window included)."""
    extents = []
    for axis in range(2):
        size = planes.shape[2 + axis]
        reach = (out_size[axis] - 1) * stride[axis] + (kernel[axis] - 1) * dilation[axis] + 1
        extents.append((padding[axis], max(0, reach - padding[axis] - size)))
    if not any(sum(extent) for extent in extents):
        return planes
    return xp.pad(planes, ((0, 0), (0, 0)) + tuple(extents), constant_values=-numpy.inf)


def _tap_region(i, j, stride, dilation, out_size):
    """The slice of the padded planes that tap (i, j) reads for every output."""
    return (slice(None), slice(None),
            slice(i * dilation[0], i * dilation[0] + stride[0] * (out_size[0] - 1) + 1, stride[0]),
            slice(j * dilation[1], j * dilation[1] + stride[1] * (out_size[1] - 1) + 1, stride[1]))


def _first_inside(xp, kernel, stride, padding, dilation, out_size):
    """(OH, OW): the number of each window's first tap inside the input (the taps before it lie in the padding)."""
    rows = [max(0, -(-(padding[0] - o * stride[0]) // dilation[0])) for o in range(out_size[0])]
    cols = [max(0, -(-(padding[1] - o * stride[1]) // dilation[1])) for o in range(out_size[1])]
    return xp.asarray(rows).reshape(-1, 1) * kernel[1] + xp.asarray(cols).reshape(1, -1)


def _forward_reference(xp, planes, kernel, stride, padding, dilation, best, taps):
    """Whole-array passes: the maximum over the taps, then the first tap equal to it; PyTorch's rule for NaN.

    `maximum(value, best)` returns `best` on ties (NumPy returns its second argument when
    both compare equal), so of 0.0 and -0.0 the earlier tap's stays, as in the rule. The
    winning tap is found from the last tap back, with uint8 arithmetic (taps += (tap -
    taps) * equal, wrapping) instead of masked writes, which run ~10x slower. A NaN
    anywhere in the result sends the whole call to `_forward_by_rule` (which NaN wins,
    and its bits, are the rule's); windows that hold only -inf get their first tap
    inside the input, not a padding one.
    """
    out_size = best.shape[2:]
    padded = _padded_planes(xp, planes, kernel, stride, padding, dilation, out_size)
    regions = [padded[_tap_region(i, j, stride, dilation, out_size)] for i in range(kernel[0]) for j in range(kernel[1])]
    best[...] = regions[0]
    for value in regions[1:]:
        xp.maximum(value, best, out=best)
    if bool(xp.isnan(best).any()):
        _forward_by_rule(xp, padded, kernel, stride, padding, dilation, best, taps)
        return
    taps[...] = 0
    step = xp.empty_like(taps)
    for tap in reversed(range(len(regions))):
        xp.subtract(tap, taps, out=step)
        step *= regions[tap] == best
        taps += step
    if padded is not planes:
        all_minus_inf = best == -numpy.inf
        if bool(all_minus_inf.any()):
            first = xp.broadcast_to(_first_inside(xp, kernel, stride, padding, dilation, out_size), taps.shape)
            xp.copyto(taps, first, where=all_minus_inf, casting="unsafe")


def _forward_by_rule(xp, padded, kernel, stride, padding, dilation, best, taps):
    """PyTorch's rule tap by tap, with masked writes: exact for NaN, slow (only for results holding NaN)."""
    out_size = best.shape[2:]
    best[...] = -numpy.inf
    taps[...] = _first_inside(xp, kernel, stride, padding, dilation, out_size)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            value = padded[_tap_region(i, j, stride, dilation, out_size)]
            take = value > best
            take |= xp.isnan(value)
            xp.copyto(best, value, where=take)
            xp.copyto(taps, i * kernel[1] + j, where=take)


def _backward_reference(xp, grad, taps, kernel, stride, padding, dilation, grad_input):
    """Per tap, from the last: each output's gradient, or zero, added to the tap's pixels.

    With a finite gradient the zeros come from `grad * chosen` (~10x faster than where):
    the ±0.0 it adds changes no sum that starts at +0.0. Without padding the pixels are
    `grad_input` itself, else a padded buffer copied back.
    """
    out_size = grad.shape[2:]
    height, width = grad_input.shape[2:]
    reach = [(out_size[axis] - 1) * stride[axis] + (kernel[axis] - 1) * dilation[axis] + 1 for axis in range(2)]
    shape = grad.shape[:2] + (max(reach[0], padding[0] + height), max(reach[1], padding[1] + width))
    padded = grad_input if shape == grad_input.shape else xp.zeros(shape, dtype=grad.dtype)
    finite = bool(xp.isfinite(grad).all())
    zero = xp.zeros((), dtype=grad.dtype)
    routed = xp.empty_like(grad)
    for tap in reversed(range(kernel[0] * kernel[1])):  # reversed: each pixel's sum in output row-major order
        region = padded[_tap_region(tap // kernel[1], tap % kernel[1], stride, dilation, out_size)]
        chosen = taps == tap
        if finite:
            xp.multiply(grad, chosen, out=routed)
        else:
            routed = xp.where(chosen, grad, zero)
        region += routed
    if padded is not grad_input:
        grad_input[...] = padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width]


__all__ = ["max_pool2d_backward", "max_pool2d_forward", "tap_dtype"]
