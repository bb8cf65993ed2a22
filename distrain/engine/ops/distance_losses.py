"""Losses that measure a distance between prediction and target: smooth_l1_loss, huber_loss, kl_div,
cosine_embedding_loss.

Like losses.py, each is a short composition of differentiable primitives; what it adds
is PyTorch's exact definition (which side of beta a tie falls on, kl_div's 'batchmean'
and its warning for 'mean', the epsilon inside the cosine) and shape checks that name
the argument, where NumPy would broadcast a (N, 1) prediction against (N,) targets.
"""
from __future__ import annotations

import warnings

from ...errors import ArgumentError, ShapeError
from .core import Tensor, as_tensor_like
from .elementwise import where
from .losses import REDUCTIONS, _legacy_reduction, _reduce, _same_shape


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (d = input - target); beta=0 is L1."""
    if beta < 0:
        raise ArgumentError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    target = _same_shape(input, target, "smooth_l1_loss")
    reduction = _legacy_reduction(size_average, reduce, reduction)
    distance = (input - target).abs()
    if beta == 0:
        return _reduce(distance, reduction, "smooth_l1_loss")
    loss = where(distance < beta, distance * distance * (0.5 / beta), distance - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere: smooth_l1 scaled by delta."""
    if delta <= 0:
        raise ArgumentError(f"huber_loss: delta must be positive, got {delta}")
    target = _same_shape(input, target, "huber_loss")
    distance = (input - target).abs()
    loss = where(distance < delta, distance * distance * 0.5, (distance - 0.5 * delta) * delta)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "huber_loss")


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(target || prediction) pointwise: target * (log target - input), with `input` log-probabilities.

    `target` holds probabilities (0 contributes 0, as x log x -> 0), or log-probabilities when
    log_target=True. reduction='batchmean' divides the sum by the batch size (the mathematical
    KL divergence per sample); 'mean' divides by every element and warns, as PyTorch does.
    """
    legacy = size_average is not None or reduce is not None
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in REDUCTIONS + ("batchmean",):
        raise ArgumentError(f"kl_div: reduction must be one of {REDUCTIONS + ('batchmean',)}, got {reduction!r}")
    if reduction == "mean" and not legacy:
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      UserWarning, stacklevel=2)
    target = _same_shape(input, target, "kl_div")
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0
        safe_log = where(positive, target, 1.0).log()  # log 1 = 0 where the target is 0: no -inf * 0
        loss = where(positive, target * safe_log, 0.0) - target * input
    if reduction == "batchmean":
        total = loss.sum()
        return total / input.shape[0] if input.ndim else total
    return _reduce(loss, reduction, "kl_div")


COSINE_EPSILON = 1e-12  # PyTorch's: added to each squared norm, so zero vectors give cos = 0, not nan


def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    """1 - cos(x1, x2) for target 1, max(0, cos(x1, x2) - margin) for target -1 (cos over the last dim).

    input1, input2: (N, D) or (D,); target: (N,) or () of 1 / -1.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if input1.ndim not in (1, 2) or tuple(input1.shape) != tuple(input2.shape):
        raise ShapeError(f"cosine_embedding_loss: input1 and input2 must both be (N, D) or (D,), got "
                         f"{tuple(input1.shape)} and {tuple(input2.shape)}")
    if not isinstance(target, Tensor):
        target = as_tensor_like(target, input1)
    expected = tuple(input1.shape[:-1])
    if tuple(target.shape) != expected:
        raise ShapeError(f"cosine_embedding_loss: target must have shape {expected} (one 1 or -1 per pair) for "
                         f"inputs of shape {tuple(input1.shape)}, got {tuple(target.shape)}")
    dim = input1.ndim - 1
    dot = (input1 * input2).sum(dim)
    squared1 = (input1 * input1).sum(dim) + COSINE_EPSILON
    squared2 = (input2 * input2).sum(dim) + COSINE_EPSILON
    cosine = dot / (squared1 * squared2).sqrt()
    similar = where(target == 1, 1.0 - cosine, 0.0)
    dissimilar = where(target == -1, (cosine - margin).clamp(min=0.0), 0.0)
    return _reduce(similar + dissimilar, reduction, "cosine_embedding_loss")


__all__ = ["cosine_embedding_loss", "huber_loss", "kl_div", "smooth_l1_loss"]
