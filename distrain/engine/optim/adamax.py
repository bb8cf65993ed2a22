"""Adamax: Adam with the infinity norm, a running maximum of |g|, in place of the squared-gradient average.

The rule, for gradient g (after `maximize` and L2 `weight_decay`), as in PyTorch:

    exp_avg = lerp(exp_avg, g, 1 - beta1)
    exp_inf = max(beta2 * exp_inf, |g| + eps)
    param += -(lr / (1 - beta1 ** step)) * exp_avg / exp_inf
"""
from __future__ import annotations

from .adam import lerp_towards
from .optimizer import Optimizer


class Adamax(Optimizer):
    """Adamax (Kingma & Ba, 2014, section 7).

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: learning rate (default 2e-3).
        betas: decay rates of the gradient average and of the running maximum (default (0.9, 0.999)).
        eps: added to |g| for numerical stability (default 1e-8).
        weight_decay: L2 penalty added to the gradient (default 0).
        maximize: ascend the objective instead of descending it.
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter: "step" (an int), "exp_avg", "exp_inf".

    Example::

        >>> optimizer = distrain.optim.Adamax(model.parameters(), lr=2e-3)
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, maximize=False,
                 packed=None):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults, packed=packed)

    def _init_state(self, group):
        return {"exp_avg": 0.0, "exp_inf": 0.0}

    def _update(self, chunk, group):
        xp, state = chunk.xp, chunk.state
        beta1, beta2 = (float(beta) for beta in group["betas"])
        grad = chunk.grad_with(group["weight_decay"], group["maximize"])
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        lerp_towards(chunk, exp_avg, grad, 1.0 - beta1)
        exp_inf *= beta2
        bound = xp.abs(grad, out=chunk.scratch(1))
        bound += float(group["eps"])
        xp.maximum(exp_inf, bound, out=exp_inf)
        change = xp.multiply(exp_avg, -float(group["lr"]) / (1.0 - beta1 ** chunk.step), out=bound)
        change /= exp_inf
        chunk.param += change
