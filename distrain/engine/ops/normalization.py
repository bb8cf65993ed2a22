"""batch_norm and layer_norm as fused ops.

Both normalise x to zero mean and unit variance over some axes, then scale and shift:
y = (x - mean) / sqrt(var + eps) * weight + bias. As one op each, the forward is a few
passes over x and the backward is the closed form (with x_hat the normalised input and
M the number of elements per statistic):

    dx = weight / sqrt(var + eps) * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    dweight = sum(dy * x_hat),  dbias = sum(dy)

instead of a dozen recorded primitives. Under create_graph the backward is recomputed
from primitives (core.reference_grads), so higher derivatives stay exact.
"""
from __future__ import annotations

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from .core import grad_state, record, reference_grads, wrap


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise (N, C, *) per channel C with batch statistics (training) or running ones (eval).

    In training the running statistics, when given, are updated in place:
    running = (1 - momentum) * running + momentum * batch_stat, the variance unbiased.
    """
    data = input._data
    if data.ndim < 2:
        raise ShapeError(f"batch_norm: expected input (N, C) or (N, C, ...), got shape {tuple(data.shape)}")
    channels = data.shape[1]
    for name, tensor in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                         ("bias", bias)):
        if tensor is not None and tuple(tensor.shape) != (channels,):
            raise ShapeError(f"batch_norm: {name} must have shape ({channels},) for input {tuple(data.shape)} "
                             f"(C={channels}), got {tuple(tensor.shape)}")
    axes = (0,) + tuple(range(2, data.ndim))  # every axis but the channels
    count = data.size // channels
    stat_shape = (1, channels) + (1,) * (data.ndim - 2)
    xp = array_module(data)
    use_batch_stats = training or running_mean is None
    if use_batch_stats:
        if count <= 1 and training:
            raise ShapeError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                             f"shape {tuple(data.shape)}; use a batch larger than 1 or call .eval()")
        mean = data.mean(axis=axes, keepdims=True)
        centered = data - mean
        var = xp.square(centered).mean(axis=axes, keepdims=True)
        if training and running_mean is not None:
            _update_running(running_mean, mean, momentum)
            _update_running(running_var, var * (count / (count - 1)), momentum)
    else:
        mean = running_mean._data.reshape(stat_shape)
        var = running_var._data.reshape(stat_shape)
        centered = data - mean
    inv_std = 1.0 / xp.sqrt(var + eps)
    normalized = centered
    normalized *= inv_std
    out = normalized * weight._data.reshape(stat_shape) if weight is not None else normalized.copy()
    if bias is not None:
        out += bias._data.reshape(stat_shape)
    result = wrap(out)
    if grad_state.enabled and (input._requires_grad or (weight is not None and weight._requires_grad)
                               or (bias is not None and bias._requires_grad)):
        stats = None if use_batch_stats else (mean, var)
        record("BatchNorm", _norm_backward, (input, weight, bias), (result,), saved=(input, weight, bias),
               args=(normalized, inv_std, axes, stat_shape, use_batch_stats, eps, stats, _batch_norm_reference))
    return result


def _update_running(running, batch_stat, momentum):
    buffer = running._data
    batch_stat = batch_stat.reshape(buffer.shape).astype(buffer.dtype, copy=False)
    if momentum is None:  # cumulative moving average needs the caller's count; PyTorch passes a factor
        raise ArgumentError("batch_norm: momentum=None must be resolved by the caller to 1/num_batches_tracked")
    buffer *= 1.0 - momentum
    buffer += momentum * batch_stat
    running._version_counter[0] += 1


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last len(normalized_shape) dimensions of each sample."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    data = input._data
    k = len(normalized_shape)
    if data.shape[data.ndim - k:] != normalized_shape or k == 0:
        raise ShapeError(f"layer_norm: normalized_shape {normalized_shape} must be the trailing dimensions of the "
                         f"input, got input shape {tuple(data.shape)}")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tuple(tensor.shape) != normalized_shape:
            raise ShapeError(f"layer_norm: {name} must have shape {normalized_shape}, got {tuple(tensor.shape)}")
    xp = array_module(data)
    axes = tuple(range(data.ndim - k, data.ndim))
    mean = data.mean(axis=axes, keepdims=True)
    centered = data - mean
    var = xp.square(centered).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / xp.sqrt(var + eps)
    normalized = centered
    normalized *= inv_std
    out = normalized * weight._data if weight is not None else normalized.copy()
    if bias is not None:
        out += bias._data
    result = wrap(out)
    if grad_state.enabled and (input._requires_grad or (weight is not None and weight._requires_grad)
                               or (bias is not None and bias._requires_grad)):
        param_axes = tuple(range(data.ndim - k))
        record("LayerNorm", _norm_backward, (input, weight, bias), (result,), saved=(input, weight, bias),
               args=(normalized, inv_std, axes, normalized_shape, True, eps, param_axes, _layer_norm_reference))
    return result


def _norm_backward(node, grad):
    """The closed form shared by both norms; `axes` are the statistic's axes."""
    normalized, inv_std, axes, param_shape, batch_stats, eps, extra, reference = node.args
    x, weight, bias = node.saved_tensors
    if grad_state.enabled:  # create_graph: differentiate the primitive definition instead
        return reference_grads(lambda x, w, b: reference(x, w, b, node.args), (x, weight, bias), grad)
    x_edge, weight_edge, bias_edge = node.next_edges
    g = grad._data
    is_layer_norm = reference is _layer_norm_reference
    param_axes = extra if is_layer_norm else axes
    grad_weight = grad_bias = grad_x = None
    if weight_edge is not None:
        grad_weight = wrap((g * normalized).sum(axis=param_axes).reshape(weight._data.shape))
    if bias_edge is not None:
        grad_bias = wrap(g.sum(axis=param_axes).reshape(bias._data.shape))
    if x_edge is not None:
        scaled = g * weight._data.reshape(param_shape) if weight is not None else g
        if batch_stats:
            mean_scaled = scaled.mean(axis=axes, keepdims=True)
            mean_scaled_normalized = (scaled * normalized).mean(axis=axes, keepdims=True)
            grad_x = scaled - mean_scaled
            grad_x -= normalized * mean_scaled_normalized
            grad_x *= inv_std
        else:  # eval-mode batch norm is an affine map: dx = dy * weight / sqrt(running_var + eps)
            grad_x = scaled * inv_std
        grad_x = wrap(grad_x)
    return grad_x, grad_weight, grad_bias


def _batch_norm_reference(x, weight, bias, args):
    _, _, axes, stat_shape, batch_stats, eps, stats, _ = args
    if batch_stats:
        mean = x.mean(dim=axes, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dim=axes, keepdim=True)
    else:
        mean, var = wrap(stats[0]), wrap(stats[1])
        centered = x - mean
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(stat_shape)
    if bias is not None:
        out = out + bias.reshape(stat_shape)
    return out


def _layer_norm_reference(x, weight, bias, args):
    _, _, axes, _, _, eps, _, _ = args
    mean = x.mean(dim=axes, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(dim=axes, keepdim=True)
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
