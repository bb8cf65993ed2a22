"""Adagrad: per-element learning rates that shrink with the sum of past squared gradients.

The rule, for gradient g (after `maximize` and L2 `weight_decay`), as in PyTorch:

    clr = lr / (1 + (step - 1) * lr_decay)
    sum += g * g
    param += -clr * g / (sqrt(sum) + eps)
"""
from __future__ import annotations

from .optimizer import Optimizer


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011).

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: learning rate (default 1e-2).
        lr_decay: the learning rate is lr / (1 + (step - 1) * lr_decay) (default 0).
        weight_decay: L2 penalty added to the gradient (default 0).
        initial_accumulator_value: starting value of the sum of squared gradients (default 0).
        eps: added to the denominator for numerical stability (default 1e-10).
        maximize: ascend the objective instead of descending it.
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter: "step" (an int) and "sum", created at the parameter's first
    update (PyTorch creates them in the constructor; the numbers are the same).

    Example::

        >>> optimizer = distrain.optim.Adagrad(model.parameters(), lr=0.05)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, *,
                 maximize=False, packed=None):
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value, "maximize": maximize}
        super().__init__(params, defaults, packed=packed)

    def _init_state(self, group):
        return {"sum": float(group["initial_accumulator_value"])}

    def _update(self, chunk, group):
        xp, total, scratch = chunk.xp, chunk.state["sum"], chunk.scratch(1)
        grad = chunk.grad_with(group["weight_decay"], group["maximize"])
        clr = float(group["lr"]) / (1.0 + (chunk.step - 1) * float(group["lr_decay"]))
        xp.multiply(grad, grad, out=scratch)
        total += scratch
        std = xp.sqrt(total, out=scratch)
        std += float(group["eps"])
        change = xp.multiply(grad, -clr, out=chunk.scratch(0))  # last read of the gradient
        change /= std
        chunk.param += change
