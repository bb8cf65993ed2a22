"""NAdam: Adam with Nesterov momentum, whose momentum coefficient mu_t warms up over the first steps.

The rule, for gradient g (after `maximize`, and L2 weight decay unless decoupled), as in
PyTorch (torch/optim/nadam.py, the single-tensor path):

    param *= 1 - lr * weight_decay                                   (decoupled decay)
    mu_t = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_product *= mu_t                                               (a scalar per parameter)
    exp_avg, exp_avg_sq as in Adam
    denom = sqrt(exp_avg_sq / (1 - beta2 ** step)) + eps
    param += -lr * (1 - mu_t) / (1 - mu_product) * g / denom
    param += -lr * mu_{t+1} / (1 - mu_product * mu_{t+1}) * exp_avg / denom
"""
from __future__ import annotations

from .adam import decayed_grad, update_moments
from .optimizer import Optimizer


def momentum_at(beta1, momentum_decay, step):
    """NAdam's momentum coefficient mu at `step` (Dozat's schedule: it approaches beta1 from beta1 / 2)."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))


class NAdam(Optimizer):
    """NAdam (Dozat, 2016), optionally with decoupled weight decay (NAdamW).

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: learning rate (default 2e-3).
        betas: decay rates of the averages of the gradient and of its square (default (0.9, 0.999)).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: weight decay (default 0): an L2 term added to the gradient, or, with
            `decoupled_weight_decay=True`, a shrink of the parameters by lr * weight_decay.
        momentum_decay: how fast mu_t warms up towards beta1 (default 4e-3).
        decoupled_weight_decay: AdamW-style decay.
        maximize: ascend the objective instead of descending it.
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter: "step" (an int), "mu_product" (a float), "exp_avg", "exp_avg_sq".

    Example::

        >>> optimizer = distrain.optim.NAdam(model.parameters(), lr=2e-3, momentum_decay=4e-3)
    """

    scalar_state = ("mu_product",)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, maximize=False, packed=None):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay, "decoupled_weight_decay": decoupled_weight_decay,
                    "maximize": maximize}
        super().__init__(params, defaults, packed=packed)

    def _init_state(self, group):
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def _advance_scalar_state(self, state, group, step):
        mu = momentum_at(float(group["betas"][0]), float(group["momentum_decay"]), step)
        state["mu_product"] = state.get("mu_product", 1.0) * mu
        return (state["mu_product"],)

    def _update(self, chunk, group):
        xp, state, step = chunk.xp, chunk.state, chunk.step
        lr = float(group["lr"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        mu, mu_next = (momentum_at(beta1, float(group["momentum_decay"]), at) for at in (step, step + 1))
        (mu_product,) = chunk.scalars
        grad = decayed_grad(chunk, group)
        update_moments(chunk, grad, beta1, beta2)
        denom = xp.divide(state["exp_avg_sq"], 1.0 - beta2 ** step, out=chunk.scratch(1))
        xp.sqrt(denom, out=denom)
        denom += float(group["eps"])
        change = xp.multiply(grad, -lr * (1.0 - mu) / (1.0 - mu_product), out=chunk.scratch(0))
        change /= denom
        chunk.param += change
        change = xp.multiply(state["exp_avg"], -lr * mu_next / (1.0 - mu_product * mu_next), out=change)
        change /= denom
        chunk.param += change
