"""Linear, Identity and Flatten: the layers that only reshape or multiply."""
from __future__ import annotations

import math

from .. import factories
from ..ops.linalg import linear
from . import init
from .module import Module
from .parameter import Parameter


def _empty_parameter(shape, device, dtype):
    return Parameter(factories.empty(*shape, device=device, dtype=dtype))


def register_weight_and_bias(module, weight_shape, bias, device, dtype):
    """Give a layer `weight` of weight_shape and, if `bias`, a bias of weight_shape[0] (else bias=None).

    Both are left uninitialised: the layer's reset_parameters fills them.
    """
    module.weight = _empty_parameter(weight_shape, device, dtype)
    if bias:
        module.bias = _empty_parameter(weight_shape[:1], device, dtype)
    else:
        module.register_parameter("bias", None)


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features).

    Initialised like PyTorch's Linear: W ~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)),
    and b ~ U(-1/sqrt(in), 1/sqrt(in)).

    Shape: input (*, in_features) -> output (*, out_features).

    Example::

        >>> layer = distrain.nn.Linear(20, 30)
        >>> layer(distrain.randn(128, 20)).shape
        distrain.Size([128, 30])
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        register_weight_and_bias(self, (out_features, in_features), bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed head). Ignores constructor arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Flatten(Module):
    """Flatten dimensions start_dim..end_dim into one (default: all but the batch dimension)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
