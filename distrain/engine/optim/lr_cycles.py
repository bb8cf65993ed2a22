"""Schedulers whose lr goes up and down: CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts.

CyclicLR and OneCycleLR can also cycle the momentum against the lr (high lr, low
momentum): group["momentum"] for SGD-like optimizers, beta1 of group["betas"] for the
Adam family, as PyTorch does, with the bounds kept in group["max_momentum"] and
group["base_momentum"].
"""
from __future__ import annotations

import math
import types

from .input_checks import OptimizerError, OptimizerTypeError
from .lr_scheduler import LRScheduler
from .optimizer import Optimizer


def _per_group(name, optimizer, value):
    """One value per param group: a list of that length as it is, a single value repeated."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise OptimizerError(f"{name} has {len(value)} values for {groups} param groups; give one per group, "
                                 "or one value for all")
        return list(value)
    return [value] * groups


def _set_momentum(group, momentum, use_beta1):
    if use_beta1:
        group["betas"] = (momentum, *group["betas"][1:])
    else:
        group["momentum"] = momentum


def _start_cycling_momentum(scheduler, optimizer, base_momentum, max_momentum, last_epoch):
    """Check that the optimizer has a momentum to cycle; a fresh schedule starts it at max_momentum."""
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise OptimizerError(f"{type(scheduler).__name__}: cycle_momentum needs an optimizer with a momentum or "
                             f"betas hyperparameter, {type(optimizer).__name__} has neither; pass "
                             "cycle_momentum=False")
    scheduler.use_beta1 = "betas" in optimizer.defaults
    max_momentums = _per_group("max_momentum", optimizer, max_momentum)
    base_momentums = _per_group("base_momentum", optimizer, base_momentum)
    if last_epoch == -1:
        for high, low, group in zip(max_momentums, base_momentums, optimizer.param_groups):
            _set_momentum(group, high, scheduler.use_beta1)
            group["max_momentum"] = high
            group["base_momentum"] = low
    return base_momentums, max_momentums


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise OptimizerTypeError(f"{type(optimizer).__name__} is not an Optimizer")


class CyclicLR(LRScheduler):
    """Cycle the lr between base_lr and max_lr (Smith, 2017), one step per batch.

    Args:
        optimizer: the optimizer whose groups' lr (and momentum) this scheduler sets.
        base_lr, max_lr: the bounds of the cycle, one value or one per group.
        step_size_up: steps from base_lr up to max_lr (default 2000).
        step_size_down: steps back down (default: step_size_up).
        mode: "triangular" (constant amplitude), "triangular2" (halved every cycle) or
            "exp_range" (scaled by gamma ** step).
        gamma: the base of "exp_range" (default 1.0).
        scale_fn: a custom amplitude function of the cycle number or the step (overrides mode).
        scale_mode: what scale_fn takes: "cycle" or "iterations".
        cycle_momentum: cycle the momentum (or beta1) between max_momentum and base_momentum, inversely to the lr.
        base_momentum, max_momentum: its bounds (defaults 0.8 and 0.9).

    Example::

        >>> optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> scheduler = CyclicLR(optimizer, base_lr=0.01, max_lr=0.1, step_size_up=500)
    """

    def __init__(self, optimizer, base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular",
                 gamma=1.0, scale_fn=None, scale_mode="cycle", cycle_momentum=True, base_momentum=0.8,
                 max_momentum=0.9, last_epoch=-1):
        _check_optimizer(optimizer)
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise OptimizerError(f"CyclicLR mode must be 'triangular', 'triangular2' or 'exp_range' (or give a "
                                 f"scale_fn), got {mode!r}")
        if not step_size_up > 0 or (step_size_down is not None and not step_size_down > 0):
            raise OptimizerError(f"CyclicLR step_size_up and step_size_down must be positive, got {step_size_up} and "
                                 f"{step_size_down}")
        self.optimizer = optimizer
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                group["lr"] = lr
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        step_size_up = float(step_size_up)
        step_size_down = float(step_size_down) if step_size_down is not None else step_size_up
        self.total_size = step_size_up + step_size_down
        self.step_ratio = step_size_up / self.total_size
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._init_scale_fn()
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.base_momentums, self.max_momentums = _start_cycling_momentum(self, optimizer, base_momentum,
                                                                              max_momentum, last_epoch)
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _init_scale_fn(self):
        """The built-in modes fix what the amplitude depends on: the cycle, or (exp_range) the step."""
        if self._scale_fn_custom is None:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"

    def scale_fn(self, x):
        """The amplitude factor at cycle (or step) x."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        if self.mode == "exp_range":
            return self.gamma ** x
        return 1.0

    def get_lr(self):
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle  # position in the cycle, 0 to 1
        scale_factor = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)
        lrs = [base_lr + (max_lr - base_lr) * scale_factor * scale
               for base_lr, max_lr in zip(self.base_lrs, self.max_lrs)]
        if self.cycle_momentum:
            for group, low, high in zip(self.optimizer.param_groups, self.base_momentums, self.max_momentums):
                _set_momentum(group, high - (high - low) * scale_factor * scale, self.use_beta1)
        return lrs

    def state_dict(self):
        """As the base's; a custom scale_fn is saved as None if a function, as its __dict__ if an object."""
        custom, self._scale_fn_custom = self._scale_fn_custom, None
        try:
            state = super().state_dict()
        finally:
            self._scale_fn_custom = custom
        if custom is not None and not isinstance(custom, types.FunctionType):
            state["_scale_fn_custom"] = dict(custom.__dict__)
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        custom = state_dict.pop("_scale_fn_custom", None)
        super().load_state_dict(state_dict)
        if custom is not None:
            self._scale_fn_custom.__dict__.update(custom)
        self._init_scale_fn()


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin, 2017): warm up to max_lr, then anneal far below the start; step per batch.

    Args:
        optimizer: the optimizer whose groups' lr (and momentum) this scheduler sets.
        max_lr: the peak lr, one value or one per group.
        total_steps: the number of steps in the cycle (or give epochs and steps_per_epoch).
        pct_start: the fraction of the cycle spent increasing the lr (default 0.3).
        anneal_strategy: "cos" (default) or "linear".
        cycle_momentum: cycle the momentum (or beta1) inversely to the lr, between
            base_momentum (default 0.85) and max_momentum (default 0.95).
        div_factor: the starting lr is max_lr / div_factor (default 25).
        final_div_factor: the final lr is the starting lr / final_div_factor (default 1e4).
        three_phase: come back down to the starting lr symmetrically before annealing (fast.ai's variant).

    Example::

        >>> scheduler = OneCycleLR(optimizer, max_lr=0.1, epochs=10, steps_per_epoch=len(loader))
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0,
                 final_div_factor=1e4, three_phase=False, last_epoch=-1):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise OptimizerError(f"OneCycleLR total_steps must be a positive int, got {total_steps!r}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(value, int) or value <= 0:
                    raise OptimizerError(f"OneCycleLR {name} must be a positive int, got {value!r}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise OptimizerError("OneCycleLR needs total_steps, or epochs and steps_per_epoch")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise OptimizerError(f"OneCycleLR pct_start must be a float between 0 and 1, got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise OptimizerError(f"OneCycleLR anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self._anneal_func_type = anneal_strategy
        # (last step of the phase, lr from, lr to, momentum from, momentum to): group keys
        rise = float(pct_start * self.total_steps) - 1
        if three_phase:
            phases = [(rise, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                      (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                       "max_momentum"),
                      (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            phases = [(rise, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                      (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        self._schedule_phases = [dict(zip(("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum"), phase))
                                 for phase in phases]
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for peak, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            _start_cycling_momentum(self, optimizer, base_momentum, max_momentum, last_epoch)
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise OptimizerError(f"OneCycleLR stepped {step} times, but total_steps is {self.total_steps}; create it "
                                 "with the number of steps you will take")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for index, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step <= end_step or index == len(self._schedule_phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        _set_momentum(group, self._anneal(group[phase["start_momentum"]],
                                                          group[phase["end_momentum"]], pct), self.use_beta1)
                    break
                start_step = end_step
        return lrs


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing from initial_lr to eta_min over T_i epochs, then restart; T_i = T_0 * T_mult ** restarts.

    SGDR (Loshchilov & Hutter, 2016). `step()` advances one epoch; `step(epoch)` jumps to
    `epoch`, which may be fractional (call it per batch with epoch + batch / batches).

    Example::

        >>> scheduler = CosineAnnealingWarmRestarts(optimizer, T_0=10, T_mult=2, eta_min=1e-5)
        >>> for epoch in range(70):
        ...     for batch, (inputs, targets) in enumerate(loader):
        ...         train_step(inputs, targets)
        ...         scheduler.step(epoch + batch / len(loader))
    """

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        if not isinstance(T_0, int) or T_0 <= 0:
            raise OptimizerError(f"CosineAnnealingWarmRestarts T_0 must be a positive int, got {T_0!r}")
        if not isinstance(T_mult, int) or T_mult < 1:
            raise OptimizerError(f"CosineAnnealingWarmRestarts T_mult must be an int >= 1, got {T_mult!r}")
        if not isinstance(eta_min, (float, int)):
            raise OptimizerError(f"CosineAnnealingWarmRestarts eta_min must be a number, got {eta_min!r}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
                for base_lr in self.base_lrs]

    def step(self, epoch=None):
        """Advance one epoch, or go to `epoch` (a float is a point inside an epoch)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur %= self.T_i
                self.T_i *= self.T_mult
        elif epoch < 0:
            raise OptimizerError(f"CosineAnnealingWarmRestarts.step: epoch must be >= 0, got {epoch}")
        elif epoch >= self.T_0:
            if self.T_mult == 1:
                self.T_cur = epoch % self.T_0
            else:
                restarts = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                self.T_cur = epoch - self.T_0 * (self.T_mult ** restarts - 1) / (self.T_mult - 1)
                self.T_i = self.T_0 * self.T_mult ** restarts
        else:
            self.T_i = self.T_0
            self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = self._group_lrs()
