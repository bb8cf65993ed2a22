"""pixel_shuffle and pixel_unshuffle: trade channels for resolution by pure rearrangement.

pixel_shuffle moves each group of r*r channels into an r x r block of pixels,
(*, C*r*r, H, W) -> (*, C, H*r, W*r), the sub-pixel convolution upsampler (Shi et al.,
2016); pixel_unshuffle is its inverse. Both are one reshape, one permute and one
reshape, so their gradients are the same rearrangement backwards.
"""
from __future__ import annotations

from ...errors import ArgumentError, ShapeError


def _check(input, factor, name, op_name):
    if not isinstance(factor, int) or isinstance(factor, bool) or factor <= 0:
        raise ArgumentError(f"{op_name}: {name} must be a positive int, got {factor!r}")
    if input.ndim < 3:
        raise ShapeError(f"{op_name}: expected input (*, C, H, W) with at least 3 dimensions, got shape "
                         f"{tuple(input.shape)}")


def pixel_shuffle(input, upscale_factor):
    """(*, C*r*r, H, W) -> (*, C, H*r, W*r) with r = upscale_factor."""
    _check(input, upscale_factor, "upscale_factor", "pixel_shuffle")
    r = upscale_factor
    *batch, channels, height, width = input.shape
    if channels % (r * r):
        raise ShapeError(f"pixel_shuffle: the channel dimension of input {tuple(input.shape)} ({channels}) must be "
                         f"divisible by upscale_factor squared ({r}*{r}={r * r})")
    lead = len(batch)
    blocks = input.reshape(*batch, channels // (r * r), r, r, height, width)
    order = tuple(range(lead)) + tuple(lead + axis for axis in (0, 3, 1, 4, 2))  # C, H, r, W, r
    return blocks.permute(*order).reshape(*batch, channels // (r * r), height * r, width * r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H*r, W*r) -> (*, C*r*r, H, W) with r = downscale_factor (the inverse of pixel_shuffle)."""
    _check(input, downscale_factor, "downscale_factor", "pixel_unshuffle")
    r = downscale_factor
    *batch, channels, height, width = input.shape
    if height % r or width % r:
        raise ShapeError(f"pixel_unshuffle: the height and width of input {tuple(input.shape)} ({height}, {width}) "
                         f"must be divisible by downscale_factor ({r})")
    lead = len(batch)
    blocks = input.reshape(*batch, channels, height // r, r, width // r, r)
    order = tuple(range(lead)) + tuple(lead + axis for axis in (0, 2, 4, 1, 3))  # C, r, r, H, W
    return blocks.permute(*order).reshape(*batch, channels * r * r, height // r, width // r)


__all__ = ["pixel_shuffle", "pixel_unshuffle"]
