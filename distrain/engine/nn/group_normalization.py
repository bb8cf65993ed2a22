"""GroupNorm, InstanceNorm1d, InstanceNorm2d: normalisation per sample (computation in ops/instance_norms.py).

InstanceNorm shares BatchNorm's parameters, buffers and repr (`_BatchNorm`) and differs in
the statistics: per (sample, channel) instead of per channel over the batch, and by
default no affine parameters and no running statistics (PyTorch's defaults).
"""
from __future__ import annotations

import warnings

from ...errors import ShapeError
from ..ops.instance_norms import group_norm, instance_norm
from .module import Module
from .normalization import _BatchNorm, add_affine_parameters


class GroupNorm(Module):
    """Normalise each sample's channels in `num_groups` groups, then scale and shift per channel.

    Shape: (N, C, *) -> same, with C = num_channels divisible by num_groups.

    Example::

        >>> norm = distrain.nn.GroupNorm(4, 32)
        >>> norm(distrain.randn(2, 32, 8, 8)).shape
        distrain.Size([2, 32, 8, 8])
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ShapeError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        add_affine_parameters(self, (num_channels,), affine, bias, device, dtype)

    def forward(self, input):
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ShapeError(f"GroupNorm({self.num_groups}, {self.num_channels}): expected input (N, "
                             f"{self.num_channels}, *), got shape {tuple(input.shape)}")
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(_BatchNorm):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False, device=None,
                 dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)

    def forward(self, input):
        batched = max(self.expected_ranks)
        if input.ndim not in self.expected_ranks:
            raise ShapeError(f"{type(self).__name__}: expected a {batched}-D (batched) or {batched - 1}-D "
                             f"(unbatched) input, got shape {tuple(input.shape)}")
        if input.ndim < batched:
            return self.forward(input.unsqueeze(0)).squeeze(0)
        if input.shape[1] != self.num_features:
            if self.affine or self.track_running_stats:
                raise ShapeError(f"{type(self).__name__}({self.num_features}): input has {input.shape[1]} "
                                 f"channels (shape {tuple(input.shape)}), expected {self.num_features}")
            warnings.warn("input's size at dim=1 does not match num_features. You can silence this warning by "
                          "not passing in num_features, which is not used because affine=False", UserWarning,
                          stacklevel=3)
        return instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                             self.training or not self.track_running_stats,
                             0.0 if self.momentum is None else self.momentum, self.eps)


class InstanceNorm1d(_InstanceNorm):
    """Normalise each channel of each sample of (N, C, L) (or unbatched (C, L)) over L."""

    expected_ranks = (2, 3)


class InstanceNorm2d(_InstanceNorm):
    """Normalise each channel of each sample of (N, C, H, W) (or unbatched (C, H, W)) over H and W (style transfer)."""

    expected_ranks = (3, 4)
