"""The public entry points of autograd: `backward` and `grad`."""
from __future__ import annotations

from ...errors import AutogradError
from ..backend import array_module
from .engine import check_root, finish_leaf, run_backward


def _as_list(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _root_grads(tensors, grad_tensors):
    grads = _as_list(grad_tensors) or [None] * len(tensors)
    if len(grads) != len(tensors):
        raise AutogradError(f"got {len(tensors)} tensors but {len(grads)} gradients; pass one gradient per tensor")
    prepared = []
    for index, (tensor, grad) in enumerate(zip(tensors, grads)):
        if grad is not None:  # (a loss's backward() passes None: no import on every step)
            grad = _as_tensor(grad, tensor)
        prepared.append(check_root(tensor, grad, index))
    return prepared


def _as_tensor(grad, tensor):
    """A root gradient given as an array or a number, as a tensor of `tensor`'s dtype.
    (tensor.py imports this package, hence the import here rather than at the top.)"""
    from ..tensor import Tensor, _make

    if isinstance(grad, Tensor):
        return grad
    return _make(array_module(tensor._data).asarray(grad, dtype=tensor.dtype))


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of `tensors` into the `.grad` of every leaf they depend on.

    Args:
        tensors: a tensor or a sequence of tensors to differentiate.
        grad_tensors: the gradient w.r.t. each tensor; may be omitted for scalars.
        retain_graph: keep the saved tensors so backward can run through the graph again
            (defaults to `create_graph`).
        create_graph: record the backward pass itself, for higher-order derivatives.
        inputs: accumulate only into these leaves (default: every leaf in the graph).
    """
    if retain_graph is None:
        retain_graph = create_graph
    if grad_tensors is None and inputs is None and not isinstance(tensors, (list, tuple)):
        # loss.backward(), once per training step: the one root, seeded with ones (2 us less than the lists below)
        run_backward([tensors], [check_root(tensors, None)], retain_graph, create_graph)
        return
    tensors = _as_list(tensors)
    grads = _root_grads(tensors, grad_tensors)
    if inputs is not None:
        inputs = _as_list(inputs)
        captured = run_backward(tensors, grads, retain_graph, create_graph, capture=inputs)
        for tensor, grad in zip(inputs, captured):
            if grad is not None:
                finish_leaf(tensor, (grad, False), create_graph, None, None)
        return
    run_backward(tensors, grads, retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         materialize_grads=False):
    """Return d(outputs)/d(inputs) without touching any `.grad`.

    Example::

        x = distrain.tensor([2.0], requires_grad=True)
        (dy,) = distrain.autograd.grad(x ** 3, x, create_graph=True)   # 3x^2 = 12
        (d2y,) = distrain.autograd.grad(dy, x)                         # 6x = 12
    """
    outputs = _as_list(outputs)
    inputs = _as_list(inputs)
    for index, tensor in enumerate(inputs):
        if not tensor._requires_grad:
            raise AutogradError(f"input {index} of autograd.grad does not require grad; nothing can be differentiated w.r.t. it")
    if retain_graph is None:
        retain_graph = create_graph
    grads = _root_grads(outputs, grad_outputs)
    captured = run_backward(outputs, grads, retain_graph, create_graph, capture=inputs)
    result = []
    for index, (tensor, value) in enumerate(zip(inputs, captured)):
        if value is None:
            if materialize_grads:
                from ..tensor import _make

                value = _make(array_module(tensor._data).zeros_like(tensor._data))
            elif not allow_unused:
                raise AutogradError(
                    f"input {index} (shape {tuple(tensor.shape)}) was not used to compute the outputs; "
                    "pass allow_unused=True to get None for it"
                )
        result.append(value)
    return tuple(result)
