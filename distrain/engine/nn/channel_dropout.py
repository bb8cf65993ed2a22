"""Dropout1d, Dropout2d, Dropout3d: dropout of whole channels in training, identity in eval()
(computation in ops/channel_dropout.py)."""
from __future__ import annotations

from ...errors import ArgumentError
from ..ops import channel_dropout
from .module import Module


class _ChannelDropout(Module):
    function = None

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return type(self).function(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_ChannelDropout):
    """Zero whole channels of (N, C, L) or (C, L) with probability p."""

    function = channel_dropout.dropout1d


class Dropout2d(_ChannelDropout):
    """Zero whole channels of (N, C, H, W) with probability p (a 3-D input is read as (N, C, L), as PyTorch does)."""

    function = channel_dropout.dropout2d


class Dropout3d(_ChannelDropout):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) with probability p."""

    function = channel_dropout.dropout3d
