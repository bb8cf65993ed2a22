"""Loss functions other than cross-entropy (softmax.py): MSE, L1, NLL, binary cross-entropy.

Each is a short composition of differentiable primitives, so gradients and higher
derivatives come from the primitives (a handful of nodes per loss, negligible beside
the model). What they add is the checking: a prediction of shape (N, 1) against a
target of shape (N,) silently broadcasts to (N, N) in NumPy; here it is an error.
"""
from __future__ import annotations

import numpy

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from .core import Tensor, as_tensor_like, grad_state, record, reference_grads, wrap
from .value_checks import require_range

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss, reduction, op_name):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ArgumentError(f"{op_name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _legacy_reduction(size_average, reduce, reduction):
    """PyTorch's deprecated size_average/reduce flags (the lecture uses size_average=False)."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else ("mean" if size_average else "sum")


def _same_shape(input, target, op_name):
    if not isinstance(target, Tensor):
        target = as_tensor_like(target, input)
    if tuple(input.shape) != tuple(target.shape):
        raise ShapeError(
            f"{op_name}: input shape {tuple(input.shape)} and target shape {tuple(target.shape)} differ; "
            "broadcasting them would compare every prediction with every target. Reshape one "
            "(e.g. target.view_as(input))."
        )
    return target


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Mean (or summed) squared error between input and target of the same shape."""
    target = _same_shape(input, target, "mse_loss")
    difference = input - target
    return _reduce(difference * difference, _legacy_reduction(size_average, reduce, reduction), "mse_loss")


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Mean (or summed) absolute error between input and target of the same shape."""
    target = _same_shape(input, target, "l1_loss")
    return _reduce((input - target).abs(), _legacy_reduction(size_average, reduce, reduction), "l1_loss")


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of class indices `target` (N, ...) under log-probabilities `input` (N, C, ...)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in REDUCTIONS:
        raise ArgumentError(f"nll_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if input.ndim == 0:
        raise ShapeError("nll_loss: input must have a class dimension, got a 0-d tensor")
    class_axis = 0 if input.ndim == 1 else 1
    n_classes = input.shape[class_axis]
    target_data = target._data if isinstance(target, Tensor) else array_module(input._data).asarray(target)
    expected = tuple(input.shape[:class_axis]) + tuple(input.shape[class_axis + 1:])
    if tuple(target_data.shape) != expected or target_data.dtype.kind not in "iu":
        raise ShapeError(f"nll_loss: target must hold integer class indices of shape {expected} for input "
                         f"{tuple(input.shape)}, got {target_data.dtype} of shape {tuple(target_data.shape)}")
    xp = array_module(target_data)
    valid = target_data != ignore_index
    safe_target = xp.where(valid, target_data, 0)
    require_range(safe_target, 0, n_classes, ShapeError, f"nll_loss: target class values must be in [0, {n_classes}) "
                  f"(or ignore_index {ignore_index}), got range [{{lowest}}, {{highest}}]", shown=target_data)
    check_class_weight(weight, n_classes, "nll_loss")
    picked = input.gather(class_axis, wrap(xp.expand_dims(safe_target, class_axis))).squeeze(class_axis)
    sample_weight = valid.astype(input._data.dtype)
    if weight is not None:
        sample_weight = weight._data[safe_target] * sample_weight
    sample_weight = wrap(sample_weight)
    loss = -(picked * sample_weight)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    total_weight = float(sample_weight._data.sum())
    if total_weight == 0:  # every target ignored: the loss is nan, its gradient zero (as in PyTorch)
        return loss.sum() * 0.0 + float("nan")
    return loss.sum() / total_weight  # PyTorch divides by the total weight of counted samples


def check_class_weight(weight, n_classes, op_name):
    """A class-weight vector must have one entry per class."""
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ShapeError(f"{op_name}: weight must have one entry per class, shape ({n_classes},), "
                         f"got {tuple(weight.shape)}")


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """BCE on logits, computed stably: (1 - y) x + (1 + (pos_weight - 1) y) softplus(-x)."""
    target = _same_shape(input, target, "binary_cross_entropy_with_logits")
    # softplus(-x) = log(1 + exp(-x)) = log1p(exp(-|x|)) + max(-x, 0), which never overflows
    softplus_negative = (-input.abs()).exp().log1p() + (-input).clamp(min=0)
    if pos_weight is None:
        loss = (1.0 - target) * input + softplus_negative
    else:
        loss = (1.0 - target) * input + (1.0 + (pos_weight - 1.0) * target) * softplus_negative
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction), "binary_cross_entropy_with_logits")


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """BCE on probabilities in [0, 1]; each log is clamped at -100 like PyTorch's.

    One op, with PyTorch's backward (x - y) / max(x (1 - x), 1e-12): differentiating the
    clamped logs instead gives 0 * inf = nan for a confident, correct prediction (x = 1).
    Under create_graph the clamped-log definition is differentiated.
    """
    target = _same_shape(input, target, "binary_cross_entropy")
    data = input._data
    require_range(data, 0, 1, ArgumentError, "binary_cross_entropy: input must hold probabilities in [0, 1]; for "
                  "logits use binary_cross_entropy_with_logits (numerically stable)", high_inclusive=True)
    xp = array_module(data)
    with numpy.errstate(divide="ignore"):
        log_x = xp.maximum(xp.log(data), -100.0)
        log_one_minus_x = xp.maximum(xp.log1p(-data), -100.0)
    y = target._data
    loss = wrap(-(y * log_x + (1.0 - y) * log_one_minus_x).astype(data.dtype, copy=False))
    if grad_state.enabled and (input._requires_grad or target._requires_grad):
        record("BinaryCrossEntropy", _binary_cross_entropy_backward, (input, target), (loss,),
               saved=(input, target), args=(log_x, log_one_minus_x))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction), "binary_cross_entropy")


def _binary_cross_entropy_backward(node, grad):
    x, y = node.saved_tensors
    if grad_state.enabled:  # create_graph: the clamped-log definition, differentiated
        return reference_grads(
            lambda x, y: -(y * x.log().clamp(min=-100) + (1.0 - y) * (1.0 - x).log().clamp(min=-100)), (x, y), grad)
    x_edge, y_edge = node.next_edges
    xp = array_module(x._data)
    grad_x = grad_y = None
    if x_edge is not None:
        denominator = xp.maximum((1.0 - x._data) * x._data, 1e-12)
        grad_x = wrap(((x._data - y._data) / denominator * grad._data).astype(x._data.dtype, copy=False))
    if y_edge is not None:
        log_x, log_one_minus_x = node.args
        grad_y = wrap(((log_one_minus_x - log_x) * grad._data).astype(x._data.dtype, copy=False))
    return grad_x, grad_y
