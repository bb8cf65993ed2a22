"""SGD: stochastic gradient descent with optional momentum, dampening and Nesterov momentum.

The rule, for gradient g (after `maximize` and L2 `weight_decay`), momentum mu,
dampening tau and learning rate lr, as in PyTorch:

    b = g                          on a parameter's first step (not (1 - tau) * g)
    b = mu * b + (1 - tau) * g     afterwards
    g = g + mu * b  if nesterov  else  b
    param -= lr * g
"""
from __future__ import annotations

from ..kernels.sgd import sgd_update
from .input_checks import OptimizerError
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Args:
        params: tensors or param groups (see `Optimizer`).
        lr: learning rate (default 1e-3).
        momentum: momentum factor (default 0: plain SGD, no state).
        dampening: dampening of the gradient added to the momentum (default 0).
        weight_decay: L2 penalty added to the gradient (default 0).
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend the objective instead of descending it.
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State per parameter (when momentum != 0): "momentum_buffer".

    Example::

        >>> optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> optimizer.zero_grad()
        >>> loss_fn(model(inputs), targets).backward()
        >>> optimizer.step()
    """

    counts_steps = False

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, packed=None):
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults, packed=packed)

    def _check_group(self, group, where):
        super()._check_group(group, where)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise OptimizerError(f"Nesterov momentum requires a momentum and zero dampening{where}; got momentum="
                                 f"{group['momentum']}, dampening={group['dampening']}")

    def _init_state(self, group):
        return {"momentum_buffer": None} if group["momentum"] != 0 else {}

    def _update(self, chunk, group):
        xp = chunk.xp
        momentum, dampening = float(group["momentum"]), float(group["dampening"])
        if sgd_update(chunk.param, chunk.grad, chunk.state["momentum_buffer"] if momentum != 0 else None,
                      lr=float(group["lr"]), momentum=momentum, dampening=dampening,
                      weight_decay=group["weight_decay"], nesterov=group["nesterov"], maximize=group["maximize"],
                      first_step=chunk.fresh):
            return  # the compiled one-pass loop ran; what follows is its reference (kernels/sgd.py)
        grad = chunk.grad_with(group["weight_decay"], group["maximize"])
        scratch = chunk.scratch(1)
        if momentum != 0:
            buffer = chunk.state["momentum_buffer"]
            if chunk.fresh:
                xp.copyto(buffer, grad)
            else:
                buffer *= momentum
                if dampening == 0:
                    buffer += grad
                else:
                    xp.multiply(grad, 1.0 - dampening, out=scratch)
                    buffer += scratch
            if group["nesterov"]:
                xp.multiply(buffer, momentum, out=scratch)
                grad = xp.add(grad, scratch, out=scratch)
            else:
                grad = buffer
        xp.multiply(grad, -float(group["lr"]), out=scratch)
        chunk.param += scratch
