"""Loss functions other than cross-entropy (softmax.py): MSE, L1, NLL, binary cross-entropy.

Each is a short composition of differentiable primitives, so gradients and higher
derivatives come from the primitives (a handful of nodes per loss, negligible beside
the model). What they add is the checking: a prediction of shape (N, 1) against a
target of shape (N,) silently broadcasts to (N, N) in NumPy; here it is an error.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..backend import array_module
from .core import Tensor, as_tensor_like, wrap

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss, reduction, op_name):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op_name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


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
        raise ValueError(f"nll_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
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
    if safe_target.size and (int(safe_target.min()) < 0 or int(safe_target.max()) >= n_classes):
        raise ShapeError(f"nll_loss: target class values must be in [0, {n_classes}) (or ignore_index "
                         f"{ignore_index}), got range [{int(target_data.min())}, {int(target_data.max())}]")
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
    return loss.sum() / sample_weight.sum()  # PyTorch divides by the total weight of counted samples


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
    """BCE on probabilities in [0, 1]; each log is clamped at -100 like PyTorch's."""
    target = _same_shape(input, target, "binary_cross_entropy")
    data = input._data
    if data.size and (float(data.min()) < 0 or float(data.max()) > 1):
        raise ValueError("binary_cross_entropy: input must hold probabilities in [0, 1]; for logits use "
                         "binary_cross_entropy_with_logits (numerically stable)")
    loss = -(target * input.log().clamp(min=-100) + (1.0 - target) * (1.0 - input).log().clamp(min=-100))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction), "binary_cross_entropy")
