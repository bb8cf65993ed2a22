"""ReduceLROnPlateau: lower the lr when a metric (a validation loss, an accuracy) stops improving.

Unlike the other schedulers it follows no schedule: `step(metric)` after each evaluation
counts the epochs without improvement, and multiplies every group's lr by `factor` once
there have been more than `patience` of them (then waits `cooldown` epochs).
"""
from __future__ import annotations

import copy
import math

from .input_checks import OptimizerError, OptimizerTypeError
from .lr_scheduler import LRScheduler
from .optimizer import Optimizer


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by `factor` when the metric has not improved for more than `patience` epochs.

    Args:
        optimizer: the optimizer whose groups' "lr" this scheduler lowers.
        mode: "min" (the metric should fall, a loss) or "max" (it should rise, an accuracy).
        factor: the multiplier, < 1 (default 0.1).
        patience: epochs without improvement tolerated before lowering the lr (default 10).
        threshold: how much better counts as better (default 1e-4).
        threshold_mode: "rel" (better than best * (1 -/+ threshold)) or "abs" (best -/+ threshold).
        cooldown: epochs to wait after lowering before counting again (default 0).
        min_lr: the lowest lr, one for all groups or a list with one per group (default 0).
        eps: a change of the lr smaller than this is not made (default 1e-8).

    Example::

        >>> scheduler = ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=3)
        >>> for epoch in range(100):
        ...     train_one_epoch(model, optimizer)
        ...     scheduler.step(validation_loss(model))
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        if not isinstance(optimizer, Optimizer):
            raise OptimizerTypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if not factor < 1.0:
            raise OptimizerError(f"ReduceLROnPlateau factor must be < 1.0, got {factor}")
        groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != groups:
                raise OptimizerError(f"ReduceLROnPlateau got {len(min_lr)} min_lr values for {groups} param groups; "
                                     "give one per group, or one number for all")
            self.default_min_lr, self.min_lrs = None, list(min_lr)
        else:
            self.default_min_lr, self.min_lrs = min_lr, [min_lr] * groups
        self.optimizer = optimizer
        self.factor = factor
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = self._group_lrs()
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise OptimizerError(f"ReduceLROnPlateau mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise OptimizerError(f"ReduceLROnPlateau threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, value, best):
        """Whether `value` improves on `best` by more than the threshold, in this mode."""
        sign = 1.0 if self.mode == "max" else -1.0
        if self.threshold_mode == "rel":
            bound = best * (1.0 + sign * self.threshold)
        else:
            bound = best + sign * self.threshold
        return value > bound if self.mode == "max" else value < bound

    def step(self, metrics, epoch=None):
        """Record this epoch's metric; lower the lr if it has not improved for more than `patience` epochs."""
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._group_lrs()

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise OptimizerError(f"the optimizer has {len(groups)} param groups, but ReduceLROnPlateau was given "
                                     f"{len(self.min_lrs)} min_lr values (a group was added since); set "
                                     "scheduler.min_lrs to one value per group")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def load_state_dict(self, state_dict):
        self.__dict__.update(copy.deepcopy(state_dict))
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
