"""Convolution as sliding windows + one GEMM (im2col), and the window op it is built on.

`sliding_windows(x, kernel, stride, padding, dilation)` is the primitive: for an input
(N, C, H, W) it returns the (N, C, OH, OW, KH, KW) tensor of every kernel-sized window,
a strided *view* of the (padded) input, so building it copies nothing. Its backward is
`fold_windows`, which sums window gradients back onto the pixels they came from (one
strided add per kernel position, KH*KW of them, never a loop over pixels); fold's
backward is `sliding_windows` again, so convolution and pooling built from these two
have exact higher-order gradients.

conv2d is a fused op (im2col, one GEMM, col2im in backward: NOTE [ Convolution layout ]);
its definition from those two primitives plus `linear`, `_conv2d_reference`, is what
create_graph differentiates, so higher-order gradients stay exact.
"""
from __future__ import annotations

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from ..flat import claim_flat_gradient
from ..kernels.col2im import col2im
from .core import check_same_dtype, grad_state, record, reference_grads, wrap


def pair(value, name, op_name):
    """An int or a pair of ints as a pair (kernel_size=3 means (3, 3))."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ArgumentError(f"{op_name}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(value)


def output_size(size, kernel, stride, padding, dilation, ceil_mode=False):
    """Output extent of a sliding window along one axis (PyTorch's formula, ceil_mode included)."""
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - span
    out = (-(-numerator // stride) if ceil_mode else numerator // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _geometry(shape, kernel, stride, padding, dilation, ceil_mode, op_name):
    if len(shape) != 4:
        raise ShapeError(f"{op_name}: expected a 4-D input (N, C, H, W), got shape {tuple(shape)}")
    _, _, height, width = shape
    if min(stride) <= 0 or min(dilation) <= 0 or min(kernel) <= 0:
        raise ArgumentError(f"{op_name}: kernel {kernel}, stride {stride} and dilation {dilation} must be positive")
    if min(padding) < 0:
        raise ArgumentError(f"{op_name}: padding must be non-negative, got {padding}")
    out = tuple(output_size(n, k, s, p, d, ceil_mode)
                for n, k, s, p, d in zip((height, width), kernel, stride, padding, dilation))
    if out[0] <= 0 or out[1] <= 0:
        raise ShapeError(
            f"{op_name}: input of spatial size {height}x{width} (padding {padding}) is smaller than the "
            f"kernel {kernel} with dilation {dilation}: the output would be {out[0]}x{out[1]}"
        )
    # bottom/right padding that ceil_mode needs beyond the symmetric padding
    extra = tuple(max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
                  for o, s, d, k, n, p in zip(out, stride, dilation, kernel, (height, width), padding))
    return out, extra


def sliding_windows(input, kernel_size, stride=1, padding=0, dilation=1, pad_value=0.0, ceil_mode=False,
                    op_name="sliding_windows"):
    """(N, C, H, W) -> (N, C, OH, OW, KH, KW): every window the kernel sees, as a strided view."""
    kernel = pair(kernel_size, "kernel_size", op_name)
    stride = pair(stride, "stride", op_name)
    padding = pair(padding, "padding", op_name)
    dilation = pair(dilation, "dilation", op_name)
    data = input._data
    (out_h, out_w), extra = _geometry(data.shape, kernel, stride, padding, dilation, ceil_mode, op_name)
    xp = array_module(data)
    if any(padding) or any(extra):
        padded = xp.pad(data, ((0, 0), (0, 0), (padding[0], padding[0] + extra[0]),
                               (padding[1], padding[1] + extra[1])), constant_values=pad_value)
    else:
        padded = data
    n, c = data.shape[:2]
    sn, sc, sh, sw = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(n, c, out_h, out_w, kernel[0], kernel[1]),
        strides=(sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1]))
    result = wrap(windows)
    if padded is data:
        result._version_counter = input._version_counter
    if grad_state.enabled and input._requires_grad:
        record("SlidingWindows", _sliding_windows_backward, (input,), (result,),
               args=(data.shape, kernel, stride, padding, dilation, extra))
    return result


def _sliding_windows_backward(node, grad):
    return (fold_windows(grad, *node.args),)


def fold_windows(windows_grad, input_shape, kernel, stride, padding, dilation, extra=(0, 0)):
    """The adjoint of sliding_windows: add each window's values back onto its pixels."""
    data = windows_grad._data
    xp = array_module(data)
    n, c, height, width = input_shape
    _, _, out_h, out_w, k_h, k_w = data.shape
    padded = xp.zeros((n, c, height + 2 * padding[0] + extra[0], width + 2 * padding[1] + extra[1]), dtype=data.dtype)
    for i in range(k_h):
        rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (out_h - 1) + 1, stride[0])
        for j in range(k_w):
            cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (out_w - 1) + 1, stride[1])
            padded[:, :, rows, cols] += data[:, :, :, :, i, j]
    out = padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width]
    result = wrap(out if out.base is None else out.copy())
    if grad_state.enabled and windows_grad._requires_grad:
        record("FoldWindows", _fold_windows_backward, (windows_grad,), (result,),
               args=(input_shape, kernel, stride, padding, dilation, extra))
    return result


def _fold_windows_backward(node, grad):
    input_shape, kernel, stride, padding, dilation, extra = node.args
    windows = sliding_windows(grad, kernel, stride, padding, dilation, ceil_mode=any(extra))
    return (windows,)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in every framework) of (N, C, H, W) by (OC, C/groups, KH, KW).

    `padding` is an int, a pair, "valid" (0) or "same" (stride 1 only).

    NOTE [ Convolution layout ]
    The fused op builds the im2col matrix channels-first, cols = (C*KH*KW, N*OH*OW), so
    that the forward is one GEMM weight(OC, C*KH*KW) @ cols giving (OC, N*OH*OW): the
    output is returned as an (N, OC, OH, OW) *view* of that (OC, N, OH, OW) memory. The
    layout then flows on: relu and pooling keep it, the next convolution's im2col reads
    channel planes that are already in (C, N) order, and the backward's
    grad.transpose(1, 0, 2, 3).reshape(OC, -1) is free. Measured on a 2-core Xeon for
    64x32x16x16 inputs: the (N*OH*OW, C*KH*KW) row layout built from a 6-D window view
    took 10 ms per im2col, this one 4 ms.

    NOTE [ Bias in the GEMM ]
    With a bias (and groups=1) cols gets one more row, of ones, and the weight one more
    column, the bias: the forward GEMM adds the bias as it accumulates, and the weight
    gradient's GEMM yields the bias gradient as its last column. That saves a pass over
    the output and one over its gradient (a row sum): on the small CNN's first layer
    (32 channels of 64x32x32), 1.0 ms of 5.3 for forward and weight gradient together.
    """
    if input.ndim == 3:  # unbatched (C, H, W), as PyTorch accepts
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    w = weight._data
    if w.ndim != 4:
        raise ShapeError(f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), got {tuple(w.shape)}")
    if input.ndim != 4:
        raise ShapeError(f"conv2d: expected input (N, C, H, W) or (C, H, W), got shape {tuple(input.shape)}")
    x = input._data
    if type(x) is not type(w):
        from .core import binary_operands

        binary_operands(input, weight, "conv2d")  # raises the device error
    check_same_dtype("conv2d", ("input", "weight", "bias"), (input, weight, bias))
    out_channels, group_channels, k_h, k_w = w.shape
    n, channels = x.shape[:2]
    if groups <= 0 or out_channels % groups or group_channels * groups != channels:
        raise ShapeError(
            f"conv2d: input has {channels} channels, weight {tuple(w.shape)} expects {group_channels * groups} "
            f"(in_channels/groups={group_channels}, groups={groups}); out_channels {out_channels} must also divide "
            "by groups"
        )
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ShapeError(f"conv2d: bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    kernel = (k_h, k_w)
    stride = pair(stride, "stride", "conv2d")
    dilation = pair(dilation, "dilation", "conv2d")
    padding, extra = _resolve_padding(padding, stride, dilation, kernel)
    if any(extra):  # padding="same" with an even span: PyTorch puts the odd pixel at the bottom/right
        from .shape import pad

        return conv2d(pad(input, (0, extra[1], 0, extra[0])), weight, bias, stride, padding, dilation, groups)
    (out_h, out_w), _ = _geometry(x.shape, kernel, stride, padding, dilation, False, "conv2d")
    geometry = (x.shape, kernel, stride, padding, dilation, (out_h, out_w), groups)
    folded = bias is not None and groups == 1  # NOTE [ Bias in the GEMM ]
    cols = _im2col(x, geometry, ones_row=folded)
    xp = array_module(x)
    if folded:
        weight_and_bias = xp.empty((out_channels, cols.shape[0]), dtype=w.dtype)
        weight_and_bias[:, :-1] = w.reshape(out_channels, -1)
        weight_and_bias[:, -1] = bias._data
        out = weight_and_bias @ cols
    elif groups == 1:
        out = w.reshape(out_channels, -1) @ cols
    else:
        out = xp.matmul(w.reshape(groups, out_channels // groups, -1), cols.reshape(groups, -1, cols.shape[1]))
        out = out.reshape(out_channels, -1)
    if bias is not None and not folded:
        out += bias._data.reshape(-1, 1)
    result = wrap(out.reshape(out_channels, n, out_h, out_w).transpose(1, 0, 2, 3))
    if grad_state.enabled and (input._requires_grad or weight._requires_grad
                               or (bias is not None and bias._requires_grad)):
        record("Conv2d", _conv2d_backward, (input, weight, bias), (result,), saved=(input, weight, bias),
               args=(cols, geometry))
    return result


def _plane_slices(geometry, i, j):
    """The (rows, cols) slices of the padded input that kernel tap (i, j) reads for every output pixel."""
    _, _, stride, _, dilation, (out_h, out_w), _ = geometry
    rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (out_h - 1) + 1, stride[0])
    cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (out_w - 1) + 1, stride[1])
    return rows, cols


def _im2col(x, geometry, ones_row=False):
    """(N, C, H, W) -> cols (C*KH*KW, N*OH*OW): one strided copy per kernel tap (NOTE [ Convolution layout ]).

    With `ones_row`, cols has one more row, of ones, for the bias (NOTE [ Bias in the GEMM ]).
    """
    shape, (k_h, k_w), _, padding, _, (out_h, out_w), _ = geometry
    n, channels, height, width = shape
    xp = array_module(x)
    padded = xp.zeros((channels, n, height + 2 * padding[0], width + 2 * padding[1]), dtype=x.dtype)
    padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width] = x.transpose(1, 0, 2, 3)
    rows_needed = channels * k_h * k_w + (1 if ones_row else 0)
    buffer = xp.empty((rows_needed, n * out_h * out_w), dtype=x.dtype)
    cols = buffer[:channels * k_h * k_w].reshape(channels, k_h, k_w, n, out_h, out_w)
    for i in range(k_h):
        for j in range(k_w):
            rows, columns = _plane_slices(geometry, i, j)
            cols[:, i, j] = padded[:, :, rows, columns]
    if ones_row:
        buffer[-1] = 1
    return buffer


def _col2im(cols_grad, geometry):
    """The adjoint of _im2col: add each tap's column gradient back onto the pixels it read (kernels/col2im.py)."""
    shape, kernel, stride, padding, dilation, out_size, _ = geometry
    return col2im(cols_grad, shape, kernel, stride, padding, dilation, out_size)


def _conv2d_backward(node, grad):
    x, weight, bias = node.saved_tensors
    cols, geometry = node.args
    if grad_state.enabled:  # create_graph: differentiate the primitive definition
        _, _, stride, padding, dilation, _, groups = geometry
        return reference_grads(lambda x, w, b: _conv2d_reference(x, w, b, stride, padding, dilation, groups),
                               (x, weight, bias), grad)
    x_edge, weight_edge, bias_edge = node.next_edges
    w = weight._data
    out_channels = w.shape[0]
    groups = geometry[-1]
    xp = array_module(w)
    grad_rows = grad._data.transpose(1, 0, 2, 3).reshape(out_channels, -1)  # free in the conv's own layout
    grad_x = grad_w = grad_b = None
    folded = cols.shape[0] == w[0].size + 1  # the bias's row of ones (NOTE [ Bias in the GEMM ])
    if bias_edge is not None and (groups > 1 or weight_edge is None):
        grad_b = _gradient_slot(bias, (out_channels,), xp, w.dtype)
        grad_rows.sum(axis=1, out=grad_b._data)
    if groups == 1:
        if weight_edge is not None and folded and bias_edge is not None:
            weight_and_bias = _weight_gradient(grad_rows, cols, xp)  # (OC, C*KH*KW + 1): the bias's is the last
            grad_w = _gradient_slot(weight, w.shape, xp, w.dtype)
            grad_w._data.reshape(out_channels, -1)[...] = weight_and_bias[:, :-1]
            grad_b = _gradient_slot(bias, (out_channels,), xp, w.dtype)
            grad_b._data[...] = weight_and_bias[:, -1]
        elif weight_edge is not None:
            grad_w = _gradient_slot(weight, w.shape, xp, w.dtype)
            _weight_gradient(grad_rows, cols[:w[0].size], xp, out=grad_w._data.reshape(out_channels, -1))
        if x_edge is not None:
            grad_x = wrap(_col2im(w.reshape(out_channels, -1).T @ grad_rows, geometry))
    else:
        grouped_grad = grad_rows.reshape(groups, out_channels // groups, -1)
        grouped_cols = cols.reshape(groups, -1, cols.shape[1])
        if weight_edge is not None:
            grad_w = wrap(xp.matmul(grouped_grad, grouped_cols.transpose(0, 2, 1)).reshape(w.shape))
        if x_edge is not None:
            grouped_w = w.reshape(groups, out_channels // groups, -1)
            cols_grad = xp.matmul(grouped_w.transpose(0, 2, 1), grouped_grad).reshape(cols.shape)
            grad_x = wrap(_col2im(cols_grad, geometry))
    return grad_x, grad_w, grad_b


def _gradient_slot(tensor, shape, xp, dtype):
    """Where `tensor`'s gradient goes: its packed flat gradient slot when it may be claimed, else a new array."""
    slot = claim_flat_gradient(tensor)
    return slot if slot is not None else wrap(xp.empty(shape, dtype=dtype))


def _weight_gradient(grad_rows, cols, xp, out=None):
    """grad_rows (OC, M) @ cols.T (M, R): the GEMM in the orientation that measured faster.

    Both have a long reduction (M = N*OH*OW). With R >= OC, computing (cols @ grad_rowsᵀ)ᵀ
    was 3-13% faster at 1 thread and 18% at 2 (OpenBLAS, 2-core AMD EPYC; R=288, OC=64:
    3.7 against 4.5 ms); with R < OC (a first layer, R = 3*3*3) the direct product was
    faster at 2 threads (2.0 against 2.6 ms). Writing into a transposed `out` costs nothing.
    """
    if cols.shape[0] >= grad_rows.shape[0]:
        product = xp.matmul(cols, grad_rows.T, out=None if out is None else out.T)
        return product.T
    return xp.matmul(grad_rows, cols.T, out=out)


def _conv2d_reference(input, weight, bias, stride, padding, dilation, groups):
    """conv2d from differentiable primitives (windows, reshape, linear/matmul): for create_graph."""
    from .linalg import linear, matmul

    out_channels, group_channels, k_h, k_w = weight.shape
    n, channels = input.shape[0], input.shape[1]
    windows = sliding_windows(input, (k_h, k_w), stride, padding, dilation, op_name="conv2d")
    out_h, out_w = windows.shape[2], windows.shape[3]
    rows = windows.permute(0, 2, 3, 1, 4, 5).reshape(n * out_h * out_w, channels * k_h * k_w)
    if groups == 1:
        out = linear(rows, weight.reshape(out_channels, channels * k_h * k_w), bias)
    else:
        grouped_rows = rows.reshape(-1, groups, group_channels * k_h * k_w).transpose(0, 1)
        grouped_weight = weight.reshape(groups, out_channels // groups, group_channels * k_h * k_w)
        out = matmul(grouped_rows, grouped_weight.transpose(1, 2)).transpose(0, 1).reshape(-1, out_channels)
        if bias is not None:
            out = out + bias
    return out.reshape(n, out_h, out_w, out_channels).permute(0, 3, 1, 2)


def _resolve_padding(padding, stride, dilation, kernel):
    """(symmetric padding pair, extra bottom/right pair): "same" may need one more pixel on one side."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        if pair(stride, "stride", "conv2d") != (1, 1):
            raise ArgumentError("conv2d: padding='same' needs stride 1")
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple(t // 2 for t in total), tuple(t % 2 for t in total)
    if isinstance(padding, str):
        raise ArgumentError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    return pair(padding, "padding", "conv2d"), (0, 0)


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Windows as columns, like torch.nn.functional.unfold: (N, C, H, W) -> (N, C*KH*KW, L)."""
    windows = sliding_windows(input, kernel_size, stride, padding, dilation, op_name="unfold")
    n, c, out_h, out_w, k_h, k_w = windows.shape
    return windows.permute(0, 1, 4, 5, 2, 3).reshape(n, c * k_h * k_w, out_h * out_w)


__all__ = ["conv2d", "fold_windows", "output_size", "pair", "sliding_windows", "unfold"]
