"""The optimizer and learning-rate schedule a configuration names, built from distrain.optim.

The schedule is one `LambdaLR` whose factor is linear warm-up (from lr/warmup_steps to lr
over `warmup_steps` steps) followed by the named decay over the remaining steps (towards 0
just after the last one). One
scheduler, stepped once per optimizer step, whose state_dict is just its step count: the
function itself comes back from the configuration on resume.
"""
from __future__ import annotations

import math

from ..engine import optim


def build_optimizer(config, parameters):
    name, lr, decay = config["optimizer"], config["lr"], config["weight_decay"]
    if name == "sgd":
        return optim.SGD(parameters, lr=lr, momentum=config["momentum"], weight_decay=decay)
    if name == "adam":
        return optim.Adam(parameters, lr=lr, weight_decay=decay)
    if name == "adamw":
        return optim.AdamW(parameters, lr=lr, weight_decay=decay)
    if name == "adagrad":
        return optim.Adagrad(parameters, lr=lr, weight_decay=decay)
    if name == "rmsprop":
        return optim.RMSprop(parameters, lr=lr, momentum=config["momentum"], weight_decay=decay)
    raise AssertionError(f"config.py admits optimizer {name!r} but optimization.py does not build it")


class LearningRateFactor:
    """The factor of lr at optimizer step `step` (0-based): warm-up, then the schedule's decay."""

    def __init__(self, schedule, warmup_steps, total_steps):
        self.schedule, self.warmup, self.total = schedule, warmup_steps, max(total_steps, 1)

    def __call__(self, step):
        if step < self.warmup:
            return (step + 1) / self.warmup
        # step W-1 ends the warm-up at the peak; the decay's first step is already below it, and its last
        # (T-1) still above 0: no update is taken twice at the peak, none with a learning rate of 0
        done = min((step - self.warmup + 1) / (self.total - self.warmup + 1), 1.0)
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * done))
        if self.schedule == "linear":
            return 1.0 - done
        if self.schedule == "step":
            return 0.1 ** ((done >= 0.5) + (done >= 0.75))
        return 1.0


def build_scheduler(config, optimizer, total_steps):
    factor = LearningRateFactor(config["schedule"], config["warmup_steps"], total_steps)
    return optim.lr_scheduler.LambdaLR(optimizer, factor)
