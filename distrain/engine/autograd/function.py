"""`autograd.Function`: user-defined ops with a hand-written backward.

Subclass it with two static methods, exactly as in PyTorch::

    class MyReLU(distrain.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * (x > 0)

    y = MyReLU.apply(x)

`forward` runs with grad recording off and returns a tensor or a tuple of tensors;
`backward` receives one gradient per output and returns one gradient (or None) per
forward argument. Built-in ops use the same graph mechanism (`graph.record`), so a
Function's node is an ordinary node: hooks, retain_graph and create_graph work alike.
"""
from __future__ import annotations

from ...errors import AutogradError, ShapeError
from ..backend import array_module
from . import grad_mode
from .graph import record


class FunctionCtx:
    """The `ctx` handed to forward and backward: a place to keep what backward needs."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self.to_save = ()
        self.non_differentiable = ()
        self.materialize_grads = True
        self.node = None

    def save_for_backward(self, *tensors):
        self.to_save = tensors

    @property
    def saved_tensors(self):
        if self.node is None:
            return tuple(self.to_save)
        saved = iter(self.node.saved_tensors)
        return tuple(None if t is None else next(saved) for t in self.to_save)

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tensors

    def set_materialize_grads(self, value: bool):
        self.materialize_grads = bool(value)

    def mark_dirty(self, *tensors):
        """Accepted for PyTorch compatibility; in-place Functions are versioned like any op."""


class Function:
    """Base class of user-defined differentiable ops (see the module docstring)."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("subclasses of distrain.autograd.Function must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("subclasses of distrain.autograd.Function must define backward(ctx, *grads)")

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor

        tensor_args = [a if isinstance(a, Tensor) else None for a in args]
        needs_input_grad = tuple(a is not None and a._requires_grad for a in tensor_args)
        ctx = FunctionCtx(needs_input_grad)
        with grad_mode.no_grad():
            result = cls.forward(ctx, *args, **kwargs)
        single = isinstance(result, Tensor)
        outputs = (result,) if single else tuple(result)
        if not (grad_mode.state.enabled and any(needs_input_grad)):
            return result
        # Outputs that are inputs returned as-is get a fresh alias, so the graph stays acyclic.
        outputs = tuple(o._detached_alias() if any(o is a for a in tensor_args) else o for o in outputs)
        # Every tensor output gets a slot in the node (backward receives one gradient per output,
        # zeros for the non-differentiable ones); only the differentiable ones keep requiring grad.
        differentiable = [o for o in outputs if isinstance(o, Tensor)]
        saved = tuple(t for t in ctx.to_save if t is not None)
        input_shapes = tuple(None if a is None else tuple(a._data.shape) for a in tensor_args)
        outputs_like = tuple((o._data.shape, o._data.dtype, array_module(o._data)) for o in differentiable)
        node = record(cls.__name__, _call_user_backward, tensor_args, differentiable, saved,
                      args=(cls, ctx, input_shapes, outputs_like))
        node.name_suffix = "Backward"
        ctx.node = node
        for o in ctx.non_differentiable:
            o._requires_grad = False
        if single:
            return outputs[0]
        return outputs


def _call_user_backward(node, grads):
    from ..tensor import _make

    cls, ctx, input_shapes, outputs_like = node.args
    grads = (grads,) if node.n_outputs == 1 else tuple(grads)
    if ctx.materialize_grads:
        grads = tuple(g if g is not None else _make(xp.zeros(shape, dtype)) for g, (shape, dtype, xp) in zip(grads, outputs_like))
    result = cls.backward(ctx, *grads)
    if not isinstance(result, tuple):
        result = (result,)
    edges = node.next_edges
    if len(result) < len(edges):
        raise AutogradError(
            f"{cls.__name__}.backward returned {len(result)} gradient(s) but forward took {len(edges)} argument(s); "
            "return one gradient (or None) per forward argument"
        )
    for index, (edge, grad, shape) in enumerate(zip(edges, result, input_shapes)):
        if edge is not None and grad is not None and tuple(grad.shape) != shape:
            raise ShapeError(
                f"{cls.__name__}.backward returned a gradient of shape {tuple(grad.shape)} for argument {index}, "
                f"which has shape {shape}"
            )
    return result[: len(edges)]
