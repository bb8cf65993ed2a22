"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, built on conv.sliding_windows.

Max pooling is a fused op on the kernels of distrain/engine/kernels/max_pool.py; average pooling sums
windows of the convolution machinery (a strided view, no copy) and each window and divides by how many elements
count (PyTorch's count_include_pad / ceil_mode / divisor_override rules).
Adaptive average pooling is two small averaging matrices, rows then columns
(out = P_h @ x @ P_w^T), exact for every input/output size.
"""
from __future__ import annotations

from ...errors import ArgumentError
from ..backend import array_module
from ..kernels import max_pool as max_pool_kernels
from .conv import _geometry, pair, sliding_windows
from .core import grad_state, record, reference_grads, wrap


def _pool_arguments(op_name, kernel_size, stride, padding):
    """(kernel, stride, padding) pairs; stride defaults to the kernel, padding at most half of it."""
    kernel = pair(kernel_size, "kernel_size", op_name)
    stride = pair(kernel if stride is None or stride == [] else stride, "stride", op_name)
    padding = pair(padding, "padding", op_name)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ArgumentError(f"{op_name}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over each window; the gradient goes to the window's first maximum, as in PyTorch.

    A fused op on two kernels (distrain/engine/kernels/max_pool.py: compiled loops, or
    their NumPy reference): the forward keeps, per output, which kernel tap won (uint8),
    and the backward adds each gradient to that tap's pixel in one pass.
    `_max_pool2d_reference` (windows + gather) is what create_graph differentiates.
    """
    kernel, stride, padding = _pool_arguments("max_pool2d", kernel_size, stride, padding)
    dilation = pair(dilation, "dilation", "max_pool2d")
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    data = input._data
    out_size, _ = _geometry(data.shape, kernel, stride, padding, dilation, ceil_mode, "max_pool2d")
    best, taps = max_pool_kernels.max_pool2d_forward(data, kernel, stride, padding, dilation, tuple(out_size))
    result = wrap(best)
    if grad_state.enabled and input._requires_grad:
        record("MaxPool2d", _max_pool2d_backward, (input,), (result,), saved=(input,),
               args=(taps, padding, (kernel, stride, dilation, ceil_mode)))
    out = result.squeeze(0) if unbatched else result
    if return_indices:
        return out, _flat_input_indices(taps.astype("int64"), input.shape, kernel, stride, padding, dilation, unbatched)
    return out


def _max_pool2d_backward(node, grad):
    """Route each window's gradient to its winning tap (the kernel visits outputs in PyTorch's order)."""
    taps, padding, options = node.args
    (x,) = node.saved_tensors
    if grad_state.enabled:  # create_graph: differentiate the primitive definition
        return reference_grads(lambda x: _max_pool2d_reference(x, padding, *options), (x,), grad)
    kernel, stride, dilation, _ = options
    return (wrap(max_pool_kernels.max_pool2d_backward(grad._data, taps, tuple(x._data.shape), kernel, stride, padding,
                                                      dilation)),)


def _max_pool2d_reference(input, padding, kernel, stride, dilation, ceil_mode):
    """max_pool2d from differentiable primitives (windows + gather at the arg-max)."""
    windows = sliding_windows(input, kernel, stride, padding, dilation, pad_value=-float("inf"),
                              ceil_mode=ceil_mode, op_name="max_pool2d")
    n, c, out_h, out_w, k_h, k_w = windows.shape
    flat = windows.reshape(n, c, out_h, out_w, k_h * k_w)
    xp = array_module(flat._data)
    arg = xp.expand_dims(flat._data.argmax(axis=-1), -1)
    return flat.gather(-1, wrap(arg)).squeeze(-1)


def _flat_input_indices(window_arg, shape, kernel, stride, padding, dilation, unbatched):
    """PyTorch's return_indices: the arg-max as a flat index into each (H, W) input plane."""
    xp = array_module(window_arg)
    out_h, out_w = window_arg.shape[2:]
    row = (xp.arange(out_h) * stride[0] - padding[0]).reshape(-1, 1) + (window_arg // kernel[1]) * dilation[0]
    col = (xp.arange(out_w) * stride[1] - padding[1]).reshape(1, -1) + (window_arg % kernel[1]) * dilation[1]
    index = (row * shape[3] + col).astype("int64")
    return wrap(index[0] if unbatched else index)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    kernel, stride, padding = _pool_arguments("avg_pool2d", kernel_size, stride, padding)
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    windows = sliding_windows(input, kernel, stride, padding, 1, ceil_mode=ceil_mode, op_name="avg_pool2d")
    sums = windows.sum(dim=(-2, -1))
    if divisor_override is not None:
        out = sums / float(divisor_override)
    elif not ceil_mode and (count_include_pad or not any(padding)):
        out = sums / float(kernel[0] * kernel[1])
    else:
        out = sums / wrap(_window_counts(input, kernel, stride, padding, ceil_mode, count_include_pad))
    return out.squeeze(0) if unbatched else out


def _window_counts(input, kernel, stride, padding, ceil_mode, count_include_pad):
    """How many elements each window averages: padding counts (if asked), ceil_mode's overhang never does."""
    xp = array_module(input._data)
    height, width = input.shape[2:]
    if count_include_pad:
        inside = xp.ones((1, 1, height + 2 * padding[0], width + 2 * padding[1]), dtype=input._data.dtype)
        unpadded = (0, 0)
    else:
        inside = xp.ones((1, 1, height, width), dtype=input._data.dtype)
        unpadded = padding
    windows = sliding_windows(wrap(inside), kernel, stride, unpadded, 1, ceil_mode=ceil_mode)
    counts = windows._data.sum(axis=(-2, -1))
    if count_include_pad and ceil_mode:
        # sizes were computed for the padded plane as if unpadded: recompute on the real geometry
        from .conv import output_size

        out_h = output_size(height, kernel[0], stride[0], padding[0], 1, True)
        out_w = output_size(width, kernel[1], stride[1], padding[1], 1, True)
        counts = counts[:, :, :out_h, :out_w]
    return counts


def adaptive_avg_pool2d(input, output_size):
    """Average over the windows PyTorch picks: start = floor(i*H/OH), end = ceil((i+1)*H/OH)."""
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    height, width = input.shape[-2:]
    if isinstance(output_size, (tuple, list)):  # None keeps that dimension's input size
        output_size = tuple(size if o is None else o for o, size in zip(output_size, (height, width)))
    out_h, out_w = pair(output_size, "output_size", "adaptive_avg_pool2d")
    if out_h <= 0 or out_w <= 0:
        raise ArgumentError(f"adaptive_avg_pool2d: output_size must be positive, got {(out_h, out_w)}")
    if (out_h, out_w) == (1, 1):
        out = input.mean(dim=(-2, -1), keepdim=True)
    elif height % out_h == 0 and width % out_w == 0:
        out = avg_pool2d(input, (height // out_h, width // out_w))
    else:
        xp = array_module(input._data)
        dtype = input._data.dtype
        rows = wrap(_averaging_matrix(xp, height, out_h, dtype))
        cols = wrap(_averaging_matrix(xp, width, out_w, dtype).T.copy())
        out = rows.matmul(input).matmul(cols)
    return out.squeeze(0) if unbatched else out


def _averaging_matrix(xp, size, out, dtype):
    matrix = xp.zeros((out, size), dtype=dtype)
    for i in range(out):  # one row per output cell along this axis (not per pixel)
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix
