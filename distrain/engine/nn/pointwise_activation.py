"""Activation layers over ops/activations.py: SiLU, Mish, Softplus, ELU, SELU, CELU, PReLU, Hardswish,
Hardsigmoid, Hardtanh, ReLU6, Softsign, Tanhshrink, LogSigmoid, Hardshrink, Softshrink, Threshold, GLU, Softmin.

Each layer is its function plus options: `_Pointwise` holds the options under PyTorch's
attribute names, calls the function with them, and prints them as PyTorch's repr does
(so a printed model reads the same). `inplace=True` is accepted where PyTorch accepts it
and writes the result over the input.
"""
from __future__ import annotations

from .. import factories
from ..ops import activations
from .module import Module
from .parameter import Parameter


class _Pointwise(Module):
    """`function(input, **options)`; subclasses name the function, the options and which of them print."""

    function = None
    shown = ()  # options printed by extra_repr as name=value
    shows_inplace = True  # "inplace=True" when set (PyTorch's Hardswish and Hardsigmoid never print it)

    def __init__(self, **options):
        super().__init__()
        for name, value in options.items():
            setattr(self, name, value)
        self._option_names = tuple(options)

    def forward(self, input):
        return type(self).function(input, **{name: getattr(self, name) for name in self._option_names})

    def extra_repr(self):
        parts = [f"{name}={getattr(self, name)}" for name in self.shown]
        if self.shows_inplace and getattr(self, "inplace", False):
            parts.append("inplace=True")
        return ", ".join(parts)


class SiLU(_Pointwise):
    """x * sigmoid(x)."""

    function = activations.silu

    def __init__(self, inplace=False):
        super().__init__(inplace=inplace)


class Mish(_Pointwise):
    """x * tanh(softplus(x))."""

    function = activations.mish

    def __init__(self, inplace=False):
        super().__init__(inplace=inplace)


class Hardswish(_Pointwise):
    """x * relu6(x + 3) / 6."""

    function = activations.hardswish
    shows_inplace = False

    def __init__(self, inplace=False):
        super().__init__(inplace=inplace)


class Hardsigmoid(_Pointwise):
    """relu6(x + 3) / 6."""

    function = activations.hardsigmoid
    shows_inplace = False

    def __init__(self, inplace=False):
        super().__init__(inplace=inplace)


class Hardtanh(_Pointwise):
    """x clipped to [min_val, max_val] (no gradient at or beyond them)."""

    function = activations.hardtanh
    shown = ("min_val", "max_val")

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__(inplace=inplace, min_val=min_val, max_val=max_val)


class ReLU6(_Pointwise):
    """min(max(x, 0), 6)."""

    function = activations.relu6

    def __init__(self, inplace=False):
        super().__init__(inplace=inplace)


class Softplus(_Pointwise):
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold."""

    function = activations.softplus
    shown = ("beta", "threshold")

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__(beta=beta, threshold=threshold)


class ELU(_Pointwise):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    function = activations.elu
    shown = ("alpha",)

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(inplace=inplace, alpha=alpha)


class CELU(_Pointwise):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""

    function = activations.celu
    shown = ("alpha",)

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(inplace=inplace, alpha=alpha)


class SELU(_Pointwise):
    """scale * elu(x, alpha) with the self-normalising constants."""

    function = activations.selu

    def __init__(self, inplace=False):
        super().__init__(inplace=inplace)


class Softsign(_Pointwise):
    function = activations.softsign


class Tanhshrink(_Pointwise):
    function = activations.tanhshrink


class LogSigmoid(_Pointwise):
    function = activations.logsigmoid


class Hardshrink(_Pointwise):
    function = activations.hardshrink

    def __init__(self, lambd=0.5):
        super().__init__(lambd=lambd)

    def extra_repr(self):
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    function = activations.softshrink


class Threshold(_Pointwise):
    """x where x > threshold, else value."""

    function = activations.threshold
    shown = ("threshold", "value")

    def __init__(self, threshold, value, inplace=False):
        super().__init__(inplace=inplace, threshold=threshold, value=value)


class GLU(_Pointwise):
    """The first half of `dim` gated by the sigmoid of the second half."""

    function = activations.glu
    shown = ("dim",)

    def __init__(self, dim=-1):
        super().__init__(dim=dim)


class Softmin(_Pointwise):
    """softmax(-x) along `dim` (give it; without it PyTorch's deprecated rule, warning)."""

    function = activations.softmin
    shown = ("dim",)

    def __init__(self, dim=None):
        super().__init__(dim=dim)

    def forward(self, input):
        return activations.softmin(input, self.dim, _stacklevel=5)


class PReLU(Module):
    """x for x > 0, a * x otherwise, with a learnable `a`: one shared (num_parameters=1) or one per channel."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(factories.full((num_parameters,), init, device=device, dtype=dtype))

    def reset_parameters(self):
        self.weight.data.fill_(self.init)

    def forward(self, input):
        return activations.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"
