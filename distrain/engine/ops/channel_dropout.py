"""dropout1d, dropout2d, dropout3d: dropout of whole channels (PyTorch's feature dropout).

In a convolutional feature map neighbouring pixels are strongly correlated, so zeroing
single pixels barely regularises; zeroing whole channels does (Tompson et al., 2015).
The mask is drawn per (sample, channel) and broadcast over the positions, from distrain's
generator for the input's device (so manual_seed makes it reproducible); kept channels
are scaled by 1/(1-p), as in dropout.
"""
from __future__ import annotations

import warnings

from ...errors import ArgumentError, ShapeError
from .dropout import masked_dropout


def _feature_dropout(input, p, training, inplace):
    """Zero each input[n, c] with probability p (input is (N, C, *))."""
    return masked_dropout(input, p, training, inplace, tuple(input.shape[:2]) + (1,) * (input.ndim - 2))


def _channel_dropout(name, spatial_dims):
    """dropout{spatial_dims}d: batched (N, C, *spatial) or unbatched (C, *spatial) input."""
    batched = spatial_dims + 2

    def dropout_nd(input, p=0.5, training=True, inplace=False):
        if input.ndim not in (batched - 1, batched):
            raise ShapeError(f"{name}: expected a {batched - 1}-D (unbatched) or {batched}-D (batched) input of "
                             f"channels with {spatial_dims} spatial dimension(s), got shape {tuple(input.shape)}")
        if input.ndim == batched:
            return _feature_dropout(input, p, training, inplace)
        out = _feature_dropout(input.unsqueeze(0), p, training, False).squeeze(0)
        return input.copy_(out) if inplace and out is not input else out

    dropout_nd.__name__ = dropout_nd.__qualname__ = name
    dropout_nd.__doc__ = f"Zero whole channels of a (N, C{', L' * spatial_dims}) input with probability p."
    return dropout_nd


dropout1d = _channel_dropout("dropout1d", 1)
dropout3d = _channel_dropout("dropout3d", 3)
_dropout2d_batched_or_unbatched = _channel_dropout("dropout2d", 2)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) with probability p.

    A 3-D input is taken as (N, C, L) (channel-wise 1-D dropout) with PyTorch's warning, not
    as an unbatched (C, H, W): PyTorch keeps that historical reading, so distrain does too.
    """
    if input.ndim == 3:
        if not 0.0 <= p <= 1.0:
            raise ArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
                      "This behavior will change in a future release to interpret the input as one without a "
                      "batch dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, "
                      "please switch to using dropout1d instead.", UserWarning, stacklevel=2)
        return _feature_dropout(input, p, training, inplace)
    return _dropout2d_batched_or_unbatched(input, p, training, inplace)


__all__ = ["dropout1d", "dropout2d", "dropout3d"]
