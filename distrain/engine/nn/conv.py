"""Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d: learnable convolutions.

The computation is ops/conv.py's windows + GEMM (1-D and transposed forms in
ops/conv_variants.py are built on it); the layers differ only in how many spatial
dimensions their options have and whether the weight is (out, in/groups, *k) or, for the
transposed forms, (in, out/groups, *k). `_ConvNd` holds that once, as PyTorch's does.
"""
from __future__ import annotations

import math

from ...errors import ArgumentError
from ..ops.conv import _resolve_padding, conv2d
from ..ops.conv_variants import (
    as_tuple,
    conv1d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose_output_size,
)
from . import init
from .linear import _empty_parameter, register_weight_and_bias
from .module import Module


class _ConvNd(Module):
    """Options, parameters, initialisation and repr shared by every convolution layer."""

    spatial_dims = 2
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                 device, dtype, output_padding=0):
        super().__init__()
        name, n = type(self).__name__, self.spatial_dims
        if not isinstance(groups, int) or groups <= 0 or in_channels % groups or out_channels % groups:
            raise ArgumentError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                                f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ArgumentError(f"{name}: padding_mode {padding_mode!r} is not supported; distrain pads with zeros "
                                "(padding_mode='zeros')")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = as_tuple(kernel_size, n, "kernel_size", name)
        self.stride = as_tuple(stride, n, "stride", name)
        self.dilation = as_tuple(dilation, n, "dilation", name)
        if isinstance(padding, str):
            if self.transposed:
                raise ArgumentError(f"{name}: padding must be an int or a tuple of ints, got {padding!r}")
            _resolve_padding(padding, (1,) * (2 - n) + self.stride, (1,) * (2 - n) + self.dilation,
                             (1,) * (2 - n) + self.kernel_size)  # validate now, not at forward
            self.padding = padding
        else:
            self.padding = as_tuple(padding, n, "padding", name)
        self.output_padding = as_tuple(output_padding, n, "output_padding", name)
        self.groups = groups
        self.padding_mode = padding_mode
        if self.transposed:
            register_weight_and_bias(self, (in_channels, out_channels // groups) + self.kernel_size, False, device,
                                     dtype)
            if bias:
                self.bias = _empty_parameter((out_channels,), device, dtype)
        else:
            register_weight_and_bias(self, (out_channels, in_channels // groups) + self.kernel_size, bias, device,
                                     dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        zeros, ones = (0,) * self.spatial_dims, (1,) * self.spatial_dims
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != zeros:
            text += f", padding={self.padding}"
        if self.dilation != ones:
            text += f", dilation={self.dilation}"
        if self.output_padding != zeros:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvNd):
    """2-D convolution over (N, C_in, H, W) with a (C_out, C_in/groups, kH, kW) kernel.

    Args: in_channels, out_channels, kernel_size, stride=1, padding=0 (int, pair, "valid"
    or "same"), dilation=1, groups=1, bias=True, padding_mode="zeros".
    Initialised like PyTorch's Conv2d (kaiming_uniform with a=sqrt(5), bias U(+-1/sqrt(fan_in))).

    Shape: (N, C_in, H, W) -> (N, C_out, H_out, W_out) with
    H_out = floor((H + 2*padding - dilation*(kH-1) - 1) / stride + 1).

    Example::

        >>> conv = distrain.nn.Conv2d(3, 32, 3, padding=1)
        >>> conv(distrain.randn(8, 3, 32, 32)).shape
        distrain.Size([8, 32, 32, 32])
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, input):
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_ConvNd):
    """1-D convolution over (N, C_in, L) with a (C_out, C_in/groups, K) kernel (conv2d at height 1).

    Args as Conv2d's, each a single int (or a 1-tuple); padding may be "valid" or "same".

    Example::

        >>> conv = distrain.nn.Conv1d(16, 33, 3, stride=2)
        >>> conv(distrain.randn(20, 16, 50)).shape
        distrain.Size([20, 33, 24])
    """

    spatial_dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, input):
        return conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _ConvTransposeNd(_ConvNd):
    """Transposed convolution: forward(input, output_size=None) may ask for one of the output sizes that
    stride makes ambiguous; the difference becomes output_padding, as in PyTorch."""

    transposed = True
    function = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype, output_padding)

    def forward(self, input, output_size=None):
        output_padding = self.output_padding if output_size is None else self._output_padding_for(input, output_size)
        return type(self).function(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                   self.groups, self.dilation)

    def _output_padding_for(self, input, output_size):
        n = self.spatial_dims
        wanted = tuple(output_size)[-n:]
        if len(wanted) != n:
            raise ArgumentError(f"{type(self).__name__}: output_size must give {n} spatial size(s), got "
                                f"{tuple(output_size)}")
        sizes = tuple(input.shape)[-n:]
        padding = []
        for axis, (size, want) in enumerate(zip(sizes, wanted)):
            smallest = conv_transpose_output_size(size, self.kernel_size[axis], self.stride[axis], self.padding[axis],
                                                  0, self.dilation[axis])
            if not smallest <= want < smallest + self.stride[axis]:
                raise ArgumentError(f"{type(self).__name__}: requested output_size {tuple(output_size)} is not "
                                    f"reachable: spatial dim {axis} can be {smallest} to "
                                    f"{smallest + self.stride[axis] - 1} for input {tuple(input.shape)}")
            padding.append(want - smallest)
        return tuple(padding)


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-D convolution (N, C_in, H, W) -> (N, C_out, H_out, W_out) with a (C_in, C_out/groups, kH, kW)
    kernel; the upsampling layer of decoders and GANs.

    H_out = (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1.

    Example::

        >>> up = distrain.nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
        >>> up(distrain.randn(4, 16, 10, 10)).shape
        distrain.Size([4, 8, 20, 20])
    """

    function = conv_transpose2d


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-D convolution (N, C_in, L) -> (N, C_out, L_out) with a (C_in, C_out/groups, K) kernel."""

    spatial_dims = 1
    function = conv_transpose1d
