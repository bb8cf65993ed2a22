"""softmax, log_softmax and the fused cross-entropy loss.

Cross-entropy is fused (log-softmax and negative log-likelihood in one op) because its
gradient is simply `softmax - target`: computing it that way costs one pass, is exact
where a separate log(softmax) would underflow, and keeps one saved array instead of four.
"""
from __future__ import annotations

import warnings

import numpy

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from .core import Tensor, grad_state, normalize_dim, record, wrap
from .value_checks import require_range


def _log_softmax_array(data, axis):
    xp = array_module(data)
    if data.ndim and data.shape[axis] == 0:  # nothing to normalise: an empty result, as in PyTorch
        return data.copy()
    shifted = data - data.max(axis=axis, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


def implicit_dim(name, dim, ndim, stacklevel):
    """`dim`, or PyTorch's deprecated choice when it is None (0 for 0-, 1- and 3-D inputs, else 1), with
    PyTorch's warning: the rule guesses the class dimension and is wrong for (N, C, L) batches."""
    if dim is not None:
        return dim
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as "
                  "an argument.", UserWarning, stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along `dim` (give it; without it PyTorch's deprecated rule picks one, warning)."""
    data = input._data if dtype is None else input._data.astype(dtype)
    axis = normalize_dim(implicit_dim("softmax", dim, data.ndim, _stacklevel), data.ndim, "softmax")
    xp = array_module(data)
    rows = data.reshape(1) if data.ndim == 0 else data  # a 0-d tensor is one row of one class
    if rows.shape[axis] == 0:  # nothing to normalise: an empty result, as in PyTorch
        out = rows.copy()
    else:
        out = rows - rows.max(axis=axis, keepdims=True)
        xp.exp(out, out=out)
        out /= out.sum(axis=axis, keepdims=True)
    result = wrap(out.reshape(data.shape))
    if grad_state.enabled and input._requires_grad:
        record("Softmax", _softmax_backward, (input,), (result,), saved=(result,), args=axis)
    return result


def _softmax_backward(node, grad):
    (out,) = node.saved_tensors
    return (out * (grad - (grad * out).sum(dim=node.args, keepdim=True)),)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """log(softmax(x)) along `dim`, computed stably (implicit dim as softmax's)."""
    data = input._data if dtype is None else input._data.astype(dtype)
    axis = normalize_dim(implicit_dim("log_softmax", dim, data.ndim, _stacklevel), data.ndim, "log_softmax")
    result = wrap(_log_softmax_array(data, axis))
    if grad_state.enabled and input._requires_grad:
        record("LogSoftmax", _log_softmax_backward, (input,), (result,), saved=(result,), args=axis)
    return result


def _log_softmax_backward(node, grad):
    from .elementwise import exp

    (out,) = node.saved_tensors
    return (grad - exp(out) * grad.sum(dim=node.args, keepdim=True),)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits `input` (N, C, ...) or (C,) and `target`.

    `target` holds class indices (N, ...) or class probabilities (same shape as input).
    Matches `torch.nn.functional.cross_entropy`, including `weight`, `ignore_index`,
    `label_smoothing` and reduction "mean" | "sum" | "none".
    """
    if reduction not in ("mean", "sum", "none"):
        raise ArgumentError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    logits = input._data
    if logits.ndim == 0:
        raise ShapeError("cross_entropy: input must have a class dimension, got a 0-d tensor")
    xp = array_module(logits)
    class_axis = 0 if logits.ndim == 1 else 1
    n_classes = logits.shape[class_axis]
    target_data = target._data if isinstance(target, Tensor) else xp.asarray(target)
    from .losses import check_class_weight

    check_class_weight(weight, n_classes, "cross_entropy")
    weight_data = None if weight is None else weight._data
    log_probs = _log_softmax_array(logits, class_axis)

    if target_data.dtype.kind == "f":  # class probabilities
        if target_data.shape != logits.shape:
            raise ShapeError(f"cross_entropy: probability targets must have the input's shape {tuple(logits.shape)}, "
                             f"got {tuple(target_data.shape)}")
        target_dist = target_data * (1.0 - label_smoothing) + label_smoothing / n_classes
        if weight_data is not None:
            target_dist = target_dist * _along(weight_data, class_axis, logits.ndim)
        per_sample = -(target_dist * log_probs).sum(axis=class_axis)
        denominator = per_sample.size if reduction == "mean" else 1
        sample_scale = None
    else:
        expected = logits.shape[:class_axis] + logits.shape[class_axis + 1:]
        if target_data.shape != expected:
            raise ShapeError(f"cross_entropy: class-index targets for input of shape {tuple(logits.shape)} must have "
                             f"shape {expected}, got {tuple(target_data.shape)}")
        valid = target_data != ignore_index
        safe_target = xp.where(valid, target_data, 0)
        require_range(safe_target, 0, n_classes, ShapeError, f"cross_entropy: target class values must be in "
                      f"[0, {n_classes}) (or ignore_index {ignore_index}), got range [{{lowest}}, {{highest}}]",
                      shown=target_data)
        valid = valid.astype(logits.dtype)
        target_weight = valid if weight_data is None else weight_data[safe_target] * valid
        picked = xp.take_along_axis(log_probs, xp.expand_dims(safe_target, class_axis), axis=class_axis)
        per_sample = picked.squeeze(class_axis) * (target_weight * (label_smoothing - 1.0))
        if label_smoothing:
            class_weight = 1.0 if weight_data is None else _along(weight_data, class_axis, logits.ndim)
            smooth = (log_probs * class_weight).sum(axis=class_axis) * valid
            per_sample -= label_smoothing / n_classes * smooth
        # PyTorch's "mean" divides by the total weight of the non-ignored targets
        # (an array, not a Python float: a static graph (distrain.jit) recomputes it on every replay)
        denominator = target_weight.sum() if reduction == "mean" else 1
        sample_scale = (valid, safe_target, target_weight)
        target_dist = None

    if reduction == "none":
        out = per_sample
    else:
        out = per_sample.sum()
        if reduction == "mean":
            with numpy.errstate(invalid="ignore", divide="ignore"):  # every target ignored: nan, as in PyTorch
                out = out / xp.asarray(denominator, dtype=logits.dtype)
    result = wrap(xp.asarray(out, dtype=logits.dtype))
    soft_target = target if target_dist is not None and isinstance(target, Tensor) else None
    if grad_state.enabled and (input._requires_grad or (soft_target is not None and soft_target._requires_grad)):
        record("CrossEntropy", _cross_entropy_backward, (input, soft_target), (result,), saved=(input,),
               args=(log_probs, class_axis, target_dist, sample_scale, weight_data, label_smoothing,
                     reduction, denominator))
    return result


def _mean_scale(xp, denominator, dtype):
    """1 / denominator (computed in float64, then rounded to `dtype`), or 0 when every target is ignored: the
    loss is nan then, but its gradient zero, as in PyTorch. A 0-d array, so that a static graph keeps it live."""
    denominator = xp.asarray(denominator, dtype=xp.float64)
    with numpy.errstate(divide="ignore"):
        return xp.where(denominator != 0, 1.0 / denominator, 0.0).astype(dtype)


def _along(vector, axis, ndim):
    """A per-class vector shaped to broadcast along the class axis."""
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return vector.reshape(shape)


def _cross_entropy_backward(node, grad):
    """d loss / d logits = (softmax - target distribution) per sample, times its weight."""
    log_probs, class_axis, target_dist, sample_scale, weight, smoothing, reduction, denominator = node.args
    xp = array_module(log_probs)
    ndim = log_probs.ndim
    n_classes = log_probs.shape[class_axis]
    if target_dist is not None:
        # Soft targets: d/dz of -sum(t * log_softmax(z)) = softmax(z) * sum(t) - t
        target_mass = target_dist
    else:
        # Hard targets: the same formula with the target mass (1 - eps) * w[t] on the true class
        # plus eps / C * w[c] spread over every class, zero for ignored samples.
        valid, safe_target, target_weight = sample_scale
        target_mass = xp.zeros_like(log_probs)
        xp.put_along_axis(target_mass, xp.expand_dims(safe_target, class_axis),
                          xp.expand_dims(target_weight * (1.0 - smoothing), class_axis), axis=class_axis)
        if smoothing:
            class_weight = 1.0 if weight is None else _along(weight, class_axis, ndim)
            target_mass += smoothing / n_classes * class_weight * xp.expand_dims(valid, class_axis)
    (logits,) = node.saved_tensors  # also checks that the logits were not modified in place
    logits_edge, target_edge = node.next_edges
    target_total = xp.expand_dims(target_mass.sum(axis=class_axis), class_axis)
    if grad_state.enabled:
        # create_graph: the same formula from differentiable ops, so second derivatives flow
        upstream = grad.unsqueeze(class_axis) if reduction == "none" else grad
        if reduction == "mean":
            upstream = upstream * wrap(_mean_scale(xp, denominator, log_probs.dtype))
        grad_logits = grad_target = None
        if logits_edge is not None:
            probs_tensor = softmax(logits, class_axis)
            grad_logits = (probs_tensor * wrap(target_total) - wrap(target_mass)) * upstream
        if target_edge is not None:
            grad_target = -log_softmax(logits, class_axis) * _target_scale(weight, smoothing, class_axis, ndim) * upstream
        return grad_logits, grad_target
    upstream = grad._data
    if reduction == "none":
        upstream = xp.expand_dims(upstream, class_axis)
    if reduction == "mean":
        upstream = upstream * _mean_scale(xp, denominator, log_probs.dtype)
    grad_logits = grad_target = None
    if logits_edge is not None:
        grad_logits = (xp.exp(log_probs) * target_total - target_mass) * upstream
        grad_logits = wrap(grad_logits.astype(log_probs.dtype, copy=False))
    if target_edge is not None:  # soft targets: d/dt of -sum(((1 - eps) t + eps/C) w log p) = -(1 - eps) w log p
        scale = _target_scale(weight, smoothing, class_axis, ndim)
        grad_target = wrap((-(log_probs * scale) * upstream).astype(log_probs.dtype, copy=False))
    return grad_logits, grad_target


def _target_scale(weight, smoothing, class_axis, ndim):
    """How strongly each class's target probability weighs its log-probability: (1 - eps) * weight."""
    return (1.0 - smoothing) * (1.0 if weight is None else _along(weight, class_axis, ndim))
