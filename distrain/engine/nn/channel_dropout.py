"""Dropout1d, Dropout2d, Dropout3d: dropout of whole channels in training, identity in eval()
(computation in ops/channel_dropout.py)."""
from __future__ import annotations

from ..ops import channel_dropout
from .activation import Dropout


class _ChannelDropout(Dropout):
    """Dropout of whole channels: Dropout with its `function` one of ops/channel_dropout.py's."""


class Dropout1d(_ChannelDropout):
    """Zero whole channels of (N, C, L) or (C, L) with probability p."""

    function = staticmethod(channel_dropout.dropout1d)


class Dropout2d(_ChannelDropout):
    """Zero whole channels of (N, C, H, W) with probability p (a 3-D input is read as (N, C, L), as PyTorch does)."""

    function = staticmethod(channel_dropout.dropout2d)


class Dropout3d(_ChannelDropout):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) with probability p."""

    function = staticmethod(channel_dropout.dropout3d)
