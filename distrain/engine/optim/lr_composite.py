"""Schedulers made of schedulers: SequentialLR (one after another) and ChainedScheduler (all at once).

Both drive schedulers the user built over the same optimizer, and save them inside their
own state dict under "_schedulers" (PyTorch's layout).
"""
from __future__ import annotations

import bisect
import copy

from .input_checks import OptimizerError, OptimizerTypeError
from .lr_plateau import ReduceLROnPlateau
from .lr_scheduler import LRScheduler


class _SchedulerSequence(LRScheduler):
    """What SequentialLR and ChainedScheduler share: checking their schedulers and saving them."""

    def _check_schedulers(self, schedulers, optimizer):
        name = type(self).__name__
        if len(schedulers) < 1:
            raise OptimizerError(f"{name} expects at least one scheduler in schedulers, got none")
        for index, scheduler in enumerate(schedulers):
            if not hasattr(scheduler, "optimizer"):
                raise OptimizerTypeError(f"{name}: schedulers[{index}] ({type(scheduler).__name__}) is not an lr "
                                         "scheduler (it has no `optimizer`)")
            if isinstance(scheduler, ReduceLROnPlateau):
                raise OptimizerError(f"{name} does not support ReduceLROnPlateau (schedulers[{index}]): its step() "
                                     "needs the metric; step it yourself beside the others")
            if scheduler.optimizer is not optimizer:
                raise OptimizerError(f"{name} expects all schedulers to belong to the same optimizer, but "
                                     f"schedulers[{index}] ({type(scheduler).__name__}) has another one")

    def state_dict(self):
        """Everything but the optimizer, with each scheduler's own state dict under "_schedulers"."""
        state = {key: copy.deepcopy(value) for key, value in self.__dict__.items()
                 if key not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("_schedulers")
        self.__dict__.update(copy.deepcopy(state_dict))
        for scheduler, state in zip(self._schedulers, saved):
            scheduler.load_state_dict(state)


class SequentialLR(_SchedulerSequence):
    """Run schedulers one after another: schedulers[i] takes over at epoch milestones[i - 1], from its own epoch 0.

    Args:
        optimizer: the optimizer every scheduler belongs to.
        schedulers: the schedulers, in the order they run.
        milestones: the epochs at which the next scheduler takes over (one fewer than schedulers).

    Example::

        >>> warmup = LinearLR(optimizer, start_factor=0.1, total_iters=5)
        >>> decay = CosineAnnealingLR(optimizer, T_max=95)
        >>> scheduler = SequentialLR(optimizer, schedulers=[warmup, decay], milestones=[5])
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        self._check_schedulers(schedulers, optimizer)
        if len(milestones) != len(schedulers) - 1:
            raise OptimizerError(f"SequentialLR expects one milestone fewer than schedulers, got {len(schedulers)} "
                                 f"schedulers and {len(milestones)} milestones")
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        # Building the schedulers applied their epoch 0 one after another: start again from the
        # initial lrs, with every scheduler one epoch back, and let the first one take its epoch 0.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        _undo_one_epoch(self._schedulers)
        first = self._schedulers[bisect.bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self):
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._update_lr(0)  # its epoch 0 (the closed form, where it has one)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


def _undo_one_epoch(schedulers):
    for scheduler in schedulers:
        if hasattr(scheduler, "_schedulers"):
            _undo_one_epoch(scheduler._schedulers)
        elif hasattr(scheduler, "last_epoch"):
            scheduler.last_epoch -= 1


class ChainedScheduler(_SchedulerSequence):
    """Step every scheduler at once, in order, each from the lr the previous one set (their effects multiply).

    Example::

        >>> scheduler = ChainedScheduler([LinearLR(optimizer, start_factor=0.1, total_iters=4),
        ...                               ExponentialLR(optimizer, gamma=0.9)])
    """

    def __init__(self, schedulers, optimizer=None):
        schedulers = list(schedulers)
        if optimizer is None and schedulers:
            optimizer = schedulers[0].optimizer
        self._check_schedulers(schedulers, optimizer)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self):
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
