"""`distrain.jit.compile_step`: the whole training step captured once and replayed every step.

    step = distrain.jit.compile_step(model, loss_fn, optimizer)
    for inputs, targets in loader:
        loss = step(inputs, targets)

Each call is `optimizer.zero_grad(); loss = loss_fn(model(inputs), targets);
loss.backward(); optimizer.step()`. Forward, loss and backward are captured at the array
level on the first call (that call runs eagerly while recording, then a verifying replay
checks the graph against it) and replayed afterwards: no autograd graph, no Tensor and no
op code in between. Gradients land in the flat gradient buffer as in eager; when the
model is a DistributedDataParallel, its buckets are reduced once the backward is done
(DistributedDataParallel._run_captured_step); then the optimizer updates the flat
parameter buffer in its usual cache-blocked pass. The optimizer is called rather than
captured, so learning-rate schedulers, param-group changes and step counts behave as
eagerly. Replays are guarded (guards.py): other shapes or a changed model retrace.
"""
from __future__ import annotations

from ..nn.module import Module
from .capture import modules_in
from .traced_function import DEFAULT_MAX_GRAPHS, TracedFunction


class CompiledStep:
    """What compile_step returns: `loss = step(inputs, targets)` (see the module docstring)."""

    def __init__(self, model, loss_fn, optimizer, *, verify=True, retrace=True, max_graphs=DEFAULT_MAX_GRAPHS,
                 passes=None):
        from ...parallel import DistributedDataParallel

        if not isinstance(model, Module):
            raise TypeError(f"compile_step: model must be a distrain.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"compile_step: loss_fn must be callable (e.g. nn.CrossEntropyLoss()), got {loss_fn!r}")
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "zero_grad"):
            raise TypeError(f"compile_step: optimizer must be a distrain.optim optimizer, got {optimizer!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.ddp = model if isinstance(model, DistributedDataParallel) else None
        self.network = model.module if self.ddp is not None else model
        modules = [self.network] + [m for m in modules_in(loss_fn) if m is not self.network]
        self._options = dict(verify=verify, retrace=retrace, max_graphs=max_graphs, passes=passes, modules=modules)
        self._traced = None

    def _forward_backward(self, inputs, targets):
        loss = self.loss_fn(self.network(inputs), targets)
        loss.backward()
        return loss

    def _run_graph(self, inputs, targets):
        if self._traced is None:
            self._traced = TracedFunction(self._forward_backward, (inputs, targets), **self._options)
            return self._traced.last_result
        return self._traced(inputs, targets)

    def __call__(self, inputs, targets):
        self.optimizer.zero_grad(set_to_none=True)
        if self.ddp is not None:
            loss = self.ddp._run_captured_step(lambda: self._run_graph(inputs, targets))
        else:
            loss = self._run_graph(inputs, targets)
        self.optimizer.step()
        return loss.detach() if loss.requires_grad else loss

    @property
    def traced(self) -> TracedFunction:
        """The traced forward+backward (None before the first step): `.graph`, `.code`, `.graphs`."""
        return self._traced

    def save(self, path):
        """Write the step's latest graph, weights and optimizer to `path`; `distrain.jit.load(path)` goes on
        training without the model's code (NOTE [ Saved graph format ] in serialization.py)."""
        from .serialization import save

        save(self, path)
