"""Adadelta: a step size from the ratio of recent update sizes to recent gradient sizes, so lr can stay 1.

The rule, for gradient g (after `maximize` and L2 `weight_decay`), as in PyTorch:

    square_avg = rho * square_avg + (1 - rho) * g * g
    delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
    acc_delta = rho * acc_delta + (1 - rho) * delta * delta
    param += -lr * delta
"""
from __future__ import annotations

from .input_checks import OptimizerError
from .optimizer import Optimizer


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012).

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: scale of the step (default 1.0, the paper's rule).
        rho: decay rate of both running averages, in [0, 1] (default 0.9).
        eps: added inside both square roots (default 1e-6).
        weight_decay: L2 penalty added to the gradient (default 0).
        maximize: ascend the objective instead of descending it.
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter: "step" (an int), "square_avg", "acc_delta".

    Example::

        >>> optimizer = distrain.optim.Adadelta(model.parameters(), rho=0.95)
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False, packed=None):
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults, packed=packed)

    def _check_group(self, group, where):
        super()._check_group(group, where)
        if not 0.0 <= group["rho"] <= 1.0:
            raise OptimizerError(f"Invalid rho value: {group['rho']}{where}; rho must lie in [0, 1], e.g. 0.9")

    def _init_state(self, group):
        return {"square_avg": 0.0, "acc_delta": 0.0}

    def _update(self, chunk, group):
        xp, state = chunk.xp, chunk.state
        rho, eps = float(group["rho"]), float(group["eps"])
        grad = chunk.grad_with(group["weight_decay"], group["maximize"])
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        scratch = chunk.scratch(1)
        square_avg *= rho
        xp.multiply(grad, 1.0 - rho, out=scratch)
        scratch *= grad
        square_avg += scratch
        std = xp.add(square_avg, eps, out=scratch)
        xp.sqrt(std, out=std)
        ratio = xp.divide(grad, std, out=std)
        delta = xp.add(acc_delta, eps, out=chunk.scratch(0))  # the gradient was read for the last time above
        xp.sqrt(delta, out=delta)
        delta *= ratio
        acc_delta *= rho
        xp.multiply(delta, 1.0 - rho, out=scratch)
        scratch *= delta
        acc_delta += scratch
        delta *= -float(group["lr"])
        chunk.param += delta
