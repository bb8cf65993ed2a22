"""RAdam: Adam whose adaptive step is switched on only once the variance of its estimate is tractable.

The rule, for gradient g (after `maximize`, and L2 weight decay unless decoupled), as in
PyTorch (torch/optim/radam.py, the single-tensor path):

    param *= 1 - lr * weight_decay                                   (decoupled decay)
    exp_avg, exp_avg_sq as in Adam
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2 ** step / (1 - beta2 ** step)
    rho_t > 5:  rect = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                param -= exp_avg / (1 - beta1 ** step) * lr * sqrt(1 - beta2 ** step) / (sqrt(exp_avg_sq) + eps) * rect
    otherwise:  param -= exp_avg / (1 - beta1 ** step) * lr                 (SGD with momentum)
"""
from __future__ import annotations

from .adam import decayed_grad, update_moments
from .optimizer import Optimizer


class RAdam(Optimizer):
    """RAdam (Liu et al., 2019): rectified Adam, no warm-up needed; optionally with decoupled weight decay.

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: learning rate (default 1e-3).
        betas: decay rates of the averages of the gradient and of its square (default (0.9, 0.999)).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: weight decay (default 0): an L2 term added to the gradient, or, with
            `decoupled_weight_decay=True`, a shrink of the parameters by lr * weight_decay.
        decoupled_weight_decay: AdamW-style decay (RAdamW).
        maximize: ascend the objective instead of descending it.
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter: "step" (an int), "exp_avg", "exp_avg_sq".

    Example::

        >>> optimizer = distrain.optim.RAdam(model.parameters(), lr=1e-3)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
                 *, maximize=False, packed=None):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize}
        super().__init__(params, defaults, packed=packed)

    def _init_state(self, group):
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def _update(self, chunk, group):
        xp, state, step = chunk.xp, chunk.state, chunk.step
        beta1, beta2 = (float(beta) for beta in group["betas"])
        grad = decayed_grad(chunk, group)
        update_moments(chunk, grad, beta1, beta2)
        bias_correction2 = 1.0 - beta2 ** step
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta2 ** step / bias_correction2
        change = xp.divide(state["exp_avg"], 1.0 - beta1 ** step, out=chunk.scratch(0))  # grad no longer needed
        change *= -float(group["lr"])
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            adaptive = xp.sqrt(state["exp_avg_sq"], out=chunk.scratch(1))
            adaptive += float(group["eps"])
            xp.divide(bias_correction2 ** 0.5, adaptive, out=adaptive)
            change *= adaptive
            change *= rect
        chunk.param += change
