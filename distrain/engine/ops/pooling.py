"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, built on conv.sliding_windows.

Max pooling is a fused op over the kernel taps (see max_pool2d); average pooling sums
windows of the convolution machinery (a strided view, no copy) and each window and divides by how many elements
count (PyTorch's count_include_pad / ceil_mode / divisor_override rules).
Adaptive average pooling is two small averaging matrices, rows then columns
(out = P_h @ x @ P_w^T), exact for every input/output size.
"""
from __future__ import annotations

from ...errors import ArgumentError
from ..backend import array_module
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

    A fused op: the forward keeps a running maximum over the KH*KW kernel taps (each tap
    a strided slice of the input, so no window matrix is built) and remembers which tap
    won; the backward adds the gradient to the winning tap's pixels, one strided add per
    tap. `_max_pool2d_reference` (windows + gather) is what create_graph differentiates.
    """
    kernel, stride, padding = _pool_arguments("max_pool2d", kernel_size, stride, padding)
    dilation = pair(dilation, "dilation", "max_pool2d")
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    data = input._data
    (out_h, out_w), extra = _geometry(data.shape, kernel, stride, padding, dilation, ceil_mode, "max_pool2d")
    xp = array_module(data)
    if any(padding) or any(extra):
        padded = xp.pad(data, ((0, 0), (0, 0), (padding[0], padding[0] + extra[0]),
                               (padding[1], padding[1] + extra[1])), constant_values=-float("inf"))
    else:
        padded = data
    slices = [_tap(i, j, stride, dilation, out_h, out_w) for i in range(kernel[0]) for j in range(kernel[1])]
    best = xp.array(padded[slices[0]], order="K", copy=True)  # keeps the input's memory order
    for region in slices[1:]:
        xp.maximum(best, padded[region], out=best)
    result = wrap(best)
    if grad_state.enabled and input._requires_grad:
        record("MaxPool2d", _max_pool2d_backward, (input,), (result,), saved=(input, result),
               args=(padded, slices, padding, (kernel, stride, dilation, ceil_mode)))
    out = result.squeeze(0) if unbatched else result
    if return_indices:
        return out, _flat_input_indices(_winning_taps(padded, slices, best), input.shape, kernel, stride, padding, dilation, unbatched)
    return out


def _tap(i, j, stride, dilation, out_h, out_w):
    """The slice of the padded input that kernel tap (i, j) covers for every output pixel."""
    return (slice(None), slice(None),
            slice(i * dilation[0], i * dilation[0] + stride[0] * (out_h - 1) + 1, stride[0]),
            slice(j * dilation[1], j * dilation[1] + stride[1] * (out_w - 1) + 1, stride[1]))


def _winning_taps(padded, slices, best):
    """For return_indices: the index of the first tap holding each window's maximum."""
    xp = array_module(best)
    winner = xp.full(best.shape, len(slices), dtype=xp.int64)
    for tap in reversed(range(len(slices))):
        winner[padded[slices[tap]] == best] = tap
    return winner


def _max_pool2d_backward(node, grad):
    """Route each window's gradient to its first maximal tap, with arithmetic only.

    `remaining` holds the gradient not yet routed: a tap equal to the window maximum
    takes all of it and leaves zero for later ties (PyTorch's first-maximum rule).
    Masked NumPy ops (where=, boolean indexing) run at ~6 ns per element against
    ~1 ns for these multiplies, so none is used.
    """
    padded, slices, padding, options = node.args
    x, out = node.saved_tensors
    if grad_state.enabled:  # create_graph: differentiate the primitive definition
        return reference_grads(lambda x: _max_pool2d_reference(x, padding, *options), (x,), grad)
    xp = array_module(padded)
    best = out._data
    remaining = xp.empty_like(best)  # every operand below in one memory order: mixed orders run ~5x slower
    remaining[...] = grad._data
    padded_grad = _zeros_in_memory_order_of(x._data, padded.shape)
    kernel, stride, dilation, _ = options
    last = len(slices) - 1
    if kernel == stride and dilation == (1, 1):
        # Windows tile without overlap: each tap owns its pixels, so write them directly.
        for tap, region in enumerate(slices):
            routed = padded_grad[region]
            xp.multiply(remaining, padded[region] == best, out=routed)
            if tap != last:
                remaining -= routed
    else:
        routed = xp.empty_like(best)
        for tap, region in enumerate(slices):
            xp.multiply(remaining, padded[region] == best, out=routed)
            padded_grad[region] += routed
            if tap != last:
                remaining -= routed
    height, width = x._data.shape[2:]
    return (wrap(padded_grad[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width]),)


def _zeros_in_memory_order_of(array, shape):
    """Zeros of NCHW `shape`, laid out channel-major like `array` when it is (NOTE [ Convolution layout ])."""
    xp = array_module(array)
    if array.ndim == 4 and array.strides[1] > array.strides[0]:
        return xp.zeros((shape[1], shape[0]) + tuple(shape[2:]), dtype=array.dtype).transpose(1, 0, 2, 3)
    return xp.zeros(shape, dtype=array.dtype)


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
