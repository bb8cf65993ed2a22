"""RMSprop: divide the gradient by a running root-mean-square of recent gradients.

The rule, for gradient g (after `maximize` and L2 `weight_decay`), as in PyTorch:

    square_avg = alpha * square_avg + (1 - alpha) * g * g
    avg = sqrt(square_avg) + eps
    centered: grad_avg = lerp(grad_avg, g, 1 - alpha); avg = sqrt(square_avg - grad_avg**2) + eps
    momentum > 0: buf = momentum * buf + g / avg; param -= lr * buf
    otherwise:    param += -lr * g / avg
"""
from __future__ import annotations

from .optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture notes), optionally centered and with momentum.

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: learning rate (default 1e-2).
        alpha: smoothing constant of the squared-gradient average (default 0.99).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: L2 penalty added to the gradient (default 0).
        momentum: momentum factor (default 0).
        centered: normalise by an estimate of the gradient's variance instead of its
            second moment.
        maximize: ascend the objective instead of descending it.
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter: "step" (an int), "square_avg", "momentum_buffer" (momentum > 0)
    and "grad_avg" (centered).

    Example::

        >>> optimizer = distrain.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9)
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False, packed=None):
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
                    "centered": centered, "maximize": maximize}
        super().__init__(params, defaults, packed=packed)

    def _init_state(self, group):
        names = {"square_avg": 0.0}
        if group["momentum"] > 0:
            names["momentum_buffer"] = 0.0
        if group["centered"]:
            names["grad_avg"] = 0.0
        return names

    def _update(self, chunk, group):
        xp, state, scratch = chunk.xp, chunk.state, chunk.scratch(1)
        alpha, lr, momentum = float(group["alpha"]), float(group["lr"]), float(group["momentum"])
        grad = chunk.grad_with(group["weight_decay"], group["maximize"])
        square_avg = state["square_avg"]
        square_avg *= alpha
        xp.multiply(grad, 1.0 - alpha, out=scratch)
        scratch *= grad
        square_avg += scratch
        if group["centered"]:
            grad_avg = state["grad_avg"]
            xp.subtract(grad, grad_avg, out=scratch)
            scratch *= 1.0 - alpha
            grad_avg += scratch
            xp.multiply(grad_avg, grad_avg, out=scratch)
            avg = xp.subtract(square_avg, scratch, out=scratch)
            xp.sqrt(avg, out=avg)
        else:
            avg = xp.sqrt(square_avg, out=scratch)
        avg += float(group["eps"])
        if momentum > 0:
            buffer = state["momentum_buffer"]
            buffer *= momentum
            buffer += xp.divide(grad, avg, out=avg)
            change = xp.multiply(buffer, -lr, out=avg)
        else:
            change = xp.multiply(grad, -lr, out=chunk.scratch(0))  # last read of the gradient
            change /= avg
        chunk.param += change
