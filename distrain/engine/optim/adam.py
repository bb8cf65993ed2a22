"""Adam and AdamW: one rule, with the weight decay either in the gradient (L2) or decoupled.

The rule, for gradient g (after `maximize`, and L2 weight decay unless decoupled), as in
PyTorch (torch/optim/adam.py, the single-tensor path):

    param *= 1 - lr * weight_decay                          (AdamW: decoupled decay)
    m = m + (1 - beta1) * (g - m)                           exp_avg (a lerp towards g)
    v = beta2 * v + (1 - beta2) * g * g                     exp_avg_sq
    v_max = max(v_max, v); use v_max for v                  (amsgrad)
    denom = sqrt(v) / sqrt(1 - beta2 ** step) + eps
    param += -(lr / (1 - beta1 ** step)) * m / denom
"""
from __future__ import annotations

from ..kernels.adam import adam_update
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2014), with optional AMSGrad and decoupled weight decay.

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: learning rate (default 1e-3).
        betas: decay rates of the averages of the gradient and of its square (default (0.9, 0.999)).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: weight decay (default 0): an L2 term added to the gradient, or, with
            `decoupled_weight_decay=True` (that is AdamW), a shrink of the parameters.
        amsgrad: use the maximum of the past squared-gradient averages (AMSGrad).
        maximize: ascend the objective instead of descending it.
        decoupled_weight_decay: AdamW's decay (Loshchilov & Hutter, 2017).
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter: "step" (an int), "exp_avg", "exp_avg_sq", and "max_exp_avg_sq"
    with amsgrad.

    Example::

        >>> optimizer = distrain.optim.Adam(model.parameters(), lr=3e-4)
        >>> optimizer.zero_grad()
        >>> loss_fn(model(inputs), targets).backward()
        >>> optimizer.step()
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, packed=None):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults, packed=packed)

    def _init_state(self, group):
        names = {"exp_avg": 0.0, "exp_avg_sq": 0.0}
        if group["amsgrad"]:
            names["max_exp_avg_sq"] = 0.0
        return names

    def _update(self, chunk, group):
        xp, param, state = chunk.xp, chunk.param, chunk.state
        lr, eps = float(group["lr"]), float(group["eps"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        if adam_update(param, chunk.grad, state["exp_avg"], state["exp_avg_sq"],
                       state["max_exp_avg_sq"] if group["amsgrad"] else None, step=chunk.step, lr=lr,
                       betas=(beta1, beta2), eps=eps, weight_decay=group["weight_decay"],
                       decoupled_weight_decay=group["decoupled_weight_decay"], maximize=group["maximize"]):
            return  # the compiled one-pass loop ran; what follows is its reference (kernels/adam.py)
        grad = decayed_grad(chunk, group)
        update_moments(chunk, grad, beta1, beta2)
        exp_avg, exp_avg_sq, scratch = state["exp_avg"], state["exp_avg_sq"], chunk.scratch(1)
        if group["amsgrad"]:
            exp_avg_sq = xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        step_size = lr / (1.0 - beta1 ** chunk.step)
        bias_correction2_sqrt = (1.0 - beta2 ** chunk.step) ** 0.5
        denom = xp.sqrt(exp_avg_sq, out=scratch)
        denom /= bias_correction2_sqrt
        denom += eps
        change = xp.multiply(exp_avg, -step_size, out=chunk.scratch(0))  # the gradient is no longer needed
        change /= denom
        param += change


def decayed_grad(chunk, group):
    """The gradient after `maximize` and weight decay: L2 in the gradient, or (decoupled) a shrink of the parameters.

    Shared by the Adam family (Adam, NAdam, RAdam), whose groups carry "decoupled_weight_decay".
    """
    weight_decay = float(group["weight_decay"])
    if group.get("decoupled_weight_decay", False):
        if weight_decay != 0:
            chunk.param *= 1.0 - float(group["lr"]) * weight_decay
        weight_decay = 0.0
    return chunk.grad_with(weight_decay, group["maximize"])


def lerp_towards(chunk, average, grad, weight):
    """average += weight * (grad - average), in place: PyTorch's `average.lerp_(grad, weight)`. Uses scratch 1."""
    difference = chunk.xp.subtract(grad, average, out=chunk.scratch(1))
    difference *= weight
    average += difference


def update_moments(chunk, grad, beta1, beta2):
    """Adam's running averages of the gradient ("exp_avg") and of its square ("exp_avg_sq"), in place."""
    exp_avg_sq, scratch = chunk.state["exp_avg_sq"], chunk.scratch(1)
    lerp_towards(chunk, chunk.state["exp_avg"], grad, 1.0 - beta1)
    exp_avg_sq *= beta2
    chunk.xp.multiply(grad, 1.0 - beta2, out=scratch)
    scratch *= grad
    exp_avg_sq += scratch


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): the parameters shrink by lr * weight_decay.

    The same rule as `Adam(..., decoupled_weight_decay=True)`, with PyTorch's default
    weight_decay of 1e-2.

    Example::

        >>> optimizer = distrain.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, packed=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, packed=packed)
