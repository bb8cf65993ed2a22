"""conv1d, conv_transpose2d and conv_transpose1d, built on conv.py's 2-D machinery.

- conv1d is conv2d on a height-1 image: (N, C, L) -> (N, C, 1, L), kernel (OC, C/g, K) ->
  (OC, C/g, 1, K). The unsqueezes are views, so the fused conv2d (one GEMM, closed-form
  backward) does all the work and no second convolution exists.
- conv_transpose2d is the adjoint of conv2d with respect to its input: every input pixel
  scatters weight-scaled copies of the kernel onto the output. As primitives: one GEMM
  gives, per input pixel, the kernel-sized window it writes (N, OC, H, W, KH, KW), and
  `fold_windows` (conv2d's own col2im, the adjoint of `sliding_windows`) adds the windows
  onto the output. The backward then follows from the primitives: fold's backward is the
  window view, the GEMM's is a GEMM, i.e. a convolution of the output gradient.
- conv_transpose1d is conv_transpose2d on a height-1 image, as conv1d.
"""
from __future__ import annotations

from ...errors import ArgumentError, ShapeError
from .conv import conv2d, fold_windows, pair


def as_tuple(value, n, name, op_name):
    """An int or a sequence of n ints as an n-tuple (kernel_size=3 in 1-D means (3,))."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    if (not isinstance(value, (tuple, list)) or len(value) != n
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ArgumentError(f"{op_name}: {name} must be an int or a tuple of {n} int(s), got {value!r}")
    return tuple(value)


def _check_1d(input, weight, op_name):
    if weight.ndim != 3:
        raise ShapeError(f"{op_name}: weight must be 3-D (channels, channels/groups, kernel_size), got shape "
                         f"{tuple(weight.shape)}")
    if input.ndim not in (2, 3):
        raise ShapeError(f"{op_name}: expected input (N, C, L) or unbatched (C, L), got shape {tuple(input.shape)}")


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of (N, C, L) by (OC, C/groups, K); padding an int, "valid" or "same"."""
    _check_1d(input, weight, "conv1d")
    channels, (out_channels, group_channels, _) = input.shape[-2], weight.shape
    if not isinstance(groups, int) or groups <= 0 or out_channels % groups or channels != group_channels * groups:
        raise ShapeError(f"conv1d: input of shape {tuple(input.shape)} has {channels} channels, weight "
                         f"{tuple(weight.shape)} expects {group_channels * groups} (in_channels/groups="
                         f"{group_channels}, groups={groups}); out_channels {out_channels} must also divide by groups")
    (stride,) = as_tuple(stride, 1, "stride", "conv1d")
    (dilation,) = as_tuple(dilation, 1, "dilation", "conv1d")
    padding = padding if isinstance(padding, str) else (0, as_tuple(padding, 1, "padding", "conv1d")[0])
    out = conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, stride), padding, (1, dilation), groups)
    return out.squeeze(-2)


def conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation):
    """PyTorch's output extent along one axis: (size - 1) * stride - 2 * padding + dilation * (kernel - 1)
    + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution of (N, C_in, H, W) by (C_in, C_out/groups, KH, KW) (the "deconvolution"
    of upsampling decoders): the gradient of conv2d with respect to its input, as a layer."""
    if input.ndim == 3:  # unbatched (C, H, W), as PyTorch accepts
        return conv_transpose2d(input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                dilation).squeeze(0)
    if weight.ndim != 4:
        raise ShapeError(f"conv_transpose2d: weight must be 4-D (in_channels, out_channels/groups, kH, kW), got "
                         f"shape {tuple(weight.shape)}")
    if input.ndim != 4:
        raise ShapeError(f"conv_transpose2d: expected input (N, C, H, W) or (C, H, W), got shape "
                         f"{tuple(input.shape)}")
    from .core import check_same_dtype

    check_same_dtype("conv_transpose2d", ("input", "weight", "bias"), (input, weight, bias))
    in_channels, group_out, k_h, k_w = weight.shape
    n, channels, height, width = input.shape
    if not isinstance(groups, int) or groups <= 0 or in_channels % groups or channels != in_channels:
        raise ShapeError(f"conv_transpose2d: input has {channels} channels, weight {tuple(weight.shape)} expects "
                         f"{in_channels} (weight's dim 0 is in_channels) and in_channels must divide by groups "
                         f"({groups})")
    out_channels = group_out * groups
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ShapeError(f"conv_transpose2d: bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    stride = pair(stride, "stride", "conv_transpose2d")
    padding = pair(padding, "padding", "conv_transpose2d")
    output_padding = pair(output_padding, "output_padding", "conv_transpose2d")
    dilation = pair(dilation, "dilation", "conv_transpose2d")
    if min(stride) <= 0 or min(dilation) <= 0 or min(padding) < 0 or min(output_padding) < 0:
        raise ArgumentError(f"conv_transpose2d: stride {stride} and dilation {dilation} must be positive, padding "
                            f"{padding} and output_padding {output_padding} non-negative")
    for extra, s, d in zip(output_padding, stride, dilation):
        if extra >= s and extra >= d:
            raise ArgumentError(f"conv_transpose2d: output_padding {output_padding} must be smaller than either "
                                f"stride {stride} or dilation {dilation}")
    out_size = tuple(conv_transpose_output_size(size, k, s, p, o, d) for size, k, s, p, o, d in
                     zip((height, width), (k_h, k_w), stride, padding, output_padding, dilation))
    if min(out_size) <= 0:
        raise ShapeError(f"conv_transpose2d: input of spatial size {height}x{width} with padding {padding} gives "
                         f"an empty output {out_size[0]}x{out_size[1]}; reduce the padding")
    from .linalg import matmul

    # per input pixel, the window it writes: rows (N*H*W, C_in) @ (C_in, C_out*KH*KW), groupwise
    rows = input.permute(0, 2, 3, 1).reshape(n * height * width, groups, in_channels // groups).transpose(0, 1)
    kernel = weight.reshape(groups, in_channels // groups, group_out * k_h * k_w)
    windows = matmul(rows, kernel).transpose(0, 1).reshape(n, height, width, out_channels, k_h, k_w)
    windows = windows.permute(0, 3, 1, 2, 4, 5)
    whole = tuple(extra // s for extra, s in zip(output_padding, stride))
    if any(whole):
        # output_padding >= stride (allowed below dilation): the output has room for more windows than the input
        # has pixels, and fold's adjoint (the window view) would cut that many; zero windows fill the room
        from .shape import pad

        windows = pad(windows, (0, 0, 0, 0, 0, whole[1], 0, whole[0]))
    out = fold_windows(windows, (n, out_channels) + out_size, (k_h, k_w), stride, padding, dilation)
    if bias is not None:
        out = out + bias.reshape(out_channels, 1, 1)
    return out


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 1-D convolution of (N, C_in, L) by (C_in, C_out/groups, K): conv_transpose2d at height 1."""
    _check_1d(input, weight, "conv_transpose1d")
    ones = [(1, as_tuple(value, 1, name, "conv_transpose1d")[0]) for name, value in
            (("stride", stride), ("padding", padding), ("output_padding", output_padding), ("dilation", dilation))]
    stride, padding, output_padding, dilation = ones
    padding = (0, padding[1])
    output_padding = (0, output_padding[1])
    out = conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, stride, padding, output_padding, groups,
                           dilation)
    return out.squeeze(-2)


__all__ = ["as_tuple", "conv1d", "conv_transpose1d", "conv_transpose2d", "conv_transpose_output_size"]
