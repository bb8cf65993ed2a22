"""Conv2d: a learnable 2-D convolution (the computation is ops/conv.py's windows + GEMM)."""
from __future__ import annotations

import math

from ...errors import ArgumentError
from ..ops.conv import _resolve_padding, conv2d, pair
from . import init
from .linear import register_weight_and_bias
from .module import Module


class Conv2d(Module):
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
        super().__init__()
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ArgumentError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ArgumentError(f"Conv2d: padding_mode {padding_mode!r} is not supported; distrain pads with zeros "
                             "(padding_mode='zeros')")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.dilation = pair(dilation, "dilation", "Conv2d")
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding", "Conv2d")
        if isinstance(padding, str):
            _resolve_padding(padding, self.stride, self.dilation, self.kernel_size)  # validate now, not at forward
        self.groups = groups
        self.padding_mode = padding_mode
        register_weight_and_bias(self, (out_channels, in_channels // groups) + self.kernel_size, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text
