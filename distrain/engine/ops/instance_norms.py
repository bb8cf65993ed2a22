"""group_norm and instance_norm: per-sample normalisation, built on the fused layer_norm and batch_norm.

Both normalise each sample separately, so batch size does not matter (GroupNorm is what
detection and diffusion models use with batches of 1 or 2):

- group_norm splits the C channels of each sample into G groups and normalises each
  group over its channels and positions: layer_norm of the (N, G, C/G * spatial) view
  over its last axis, then the per-channel affine.
- instance_norm normalises each (sample, channel) plane over its positions: group_norm
  with one channel per group. With running statistics, eval mode uses them (an affine
  map: batch_norm with training=False), and training updates them with the batch average
  of the per-instance statistics, as PyTorch does.
"""
from __future__ import annotations

import math

from ...errors import ShapeError
from .normalization import _update_running, batch_norm, layer_norm


def _channel_shape(input):
    return (input.shape[1],) + (1,) * (input.ndim - 2)


def _check_affine(op_name, input, weight, bias):
    channels = input.shape[1]
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tuple(tensor.shape) != (channels,):
            raise ShapeError(f"{op_name}: {name} must have shape ({channels},) for input {tuple(input.shape)} "
                             f"(C={channels}), got {tuple(tensor.shape)}")


def _affine(out, weight, bias, input):
    if weight is not None:
        out = out * weight.reshape(_channel_shape(input))
    if bias is not None:
        out = out + bias.reshape(_channel_shape(input))
    return out


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise (N, C, *) over groups of C/num_groups channels (and all positions) of each sample."""
    if input.ndim < 2:
        raise ShapeError(f"group_norm: expected input (N, C, *), got shape {tuple(input.shape)}")
    channels = input.shape[1]
    if num_groups <= 0 or channels % num_groups:
        raise ShapeError(f"group_norm: num_groups ({num_groups}) must divide the number of channels ({channels}) "
                         f"of input {tuple(input.shape)}")
    _check_affine("group_norm", input, weight, bias)
    n = input.shape[0]
    grouped = input.reshape(n, num_groups, -1)
    out = layer_norm(grouped, (grouped.shape[-1],), None, None, eps).reshape(tuple(input.shape))
    return _affine(out, weight, bias, input)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalise each (sample, channel) of (N, C, *) over its positions; see the module docstring."""
    if input.ndim < 3:
        raise ShapeError(f"instance_norm: expected input (N, C, L) or (N, C, H, W), got shape {tuple(input.shape)}")
    _check_affine("instance_norm", input, weight, bias)
    for name, tensor in (("running_mean", running_mean), ("running_var", running_var)):
        if tensor is not None and tuple(tensor.shape) != (input.shape[1],):
            raise ShapeError(f"instance_norm: {name} must have shape ({input.shape[1]},) for input "
                             f"{tuple(input.shape)}, got {tuple(tensor.shape)}")
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ShapeError("instance_norm: use_input_stats=False needs running_mean and running_var")
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    positions = math.prod(input.shape[2:])
    if positions <= 1:
        raise ShapeError(f"instance_norm: expected more than 1 spatial element per channel, got input of shape "
                         f"{tuple(input.shape)}")
    if running_mean is not None and running_var is not None:
        data = input._data  # statistics are not differentiated: arrays, no graph
        axes = tuple(range(2, data.ndim))
        _update_running(running_mean, data.mean(axis=axes).mean(axis=0), momentum)
        _update_running(running_var, data.var(axis=axes, ddof=1).mean(axis=0), momentum)
    return group_norm(input, input.shape[1], weight, bias, eps)


__all__ = ["group_norm", "instance_norm"]
