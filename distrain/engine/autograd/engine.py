"""The backward walk: gradients flow from the roots to the leaves in dependency order.

The walk is iterative (no recursion, so 10,000-op chains work): it first counts, for every
node and leaf reachable from the roots, how many edges lead into it; a target becomes
ready when all of them have delivered, and ready nodes run newest-first (by creation
order, like PyTorch), which finishes the gradients of the last layers first — the order
a data-parallel reducer wants to start communicating in.

NOTE [ Gradient ownership ]
A leaf's first gradient of a backward becomes its `.grad` without a copy when the engine
owns that array: it was freshly produced by a backward formula (its array is no view, and
it is not the very tensor the formula received, as `add` and `reshape` pass theirs on).
Anything else is copied, so two leaves never share gradient memory. A leaf that already
has a `.grad` accumulates into that array in place, which is what lets `.grad` be a view
into a flat gradient buffer.
"""
from __future__ import annotations

import heapq
import threading

from ...errors import AutogradError, DTypeError
from . import anomaly_mode, grad_mode
from .graph import Node

anomaly_state = anomaly_mode.state  # read on every op: one attribute lookup when off


def run_backward(roots, root_grads, retain_graph=False, create_graph=False, capture=None):
    """Propagate `root_grads` from `roots` through the graph.

    Without `capture`, leaf gradients are accumulated into `.grad` (Tensor.backward).
    With `capture` (a list of tensors), nothing is accumulated and their gradients are
    returned instead (autograd.grad).

    Every training step runs this once, through every node of the step: the walk keys its
    tables by the targets themselves (Nodes and Tensors both hash by identity) and keeps
    per-edge work to a few dictionary operations.
    """
    root_edges = [(tensor.grad_fn, tensor._output_nr) if tensor.grad_fn is not None else (tensor, 0)
                  for tensor in roots]
    dependencies = _count_dependencies(root_edges)

    captured = None
    capture_keys = None
    if capture is not None:
        captured = [None] * len(capture)
        capture_keys = {}
        for index, tensor in enumerate(capture):
            target = tensor.grad_fn if tensor.grad_fn is not None else tensor
            capture_keys.setdefault((id(target), tensor._output_nr if tensor.grad_fn is not None else 0), []).append(index)

    # Pending gradients per target: for single-output nodes and leaves the entry is one
    # (tensor, engine_owns_it) pair, for multi-output nodes a list of them, one per output.
    buffers = {}
    ready = []  # (-seq, node, pending gradient): newest first; seq is unique, so nothing else is compared
    push, pop = heapq.heappush, heapq.heappop

    def deliver(target, output_nr, grad, owned):
        is_node = type(target) is Node
        # A gradient has its tensor's dtype, whatever dtypes the formula mixed (as in PyTorch).
        dtype = target.output_dtype if is_node else target._data.dtype
        if grad._data.dtype != dtype and dtype is not None:
            grad, owned = grad.to(dtype), True
        remaining = dependencies[target] - 1
        dependencies[target] = remaining
        if is_node and target.n_outputs != 1:
            slots = buffers.get(target)
            if slots is None:
                slots = buffers[target] = [None] * target.n_outputs
            slots[output_nr] = _accumulate(slots[output_nr], grad, owned, create_graph)
            if remaining == 0:
                push(ready, (-target.seq, target, buffers.pop(target)))
            return
        # Most targets have one incoming edge: their gradient goes straight on, never stored.
        pending = buffers.pop(target, None)
        entry = (grad, owned) if pending is None else _accumulate(pending, grad, owned, create_graph)
        if remaining:
            buffers[target] = entry
        elif is_node:
            push(ready, (-target.seq, target, entry))
        else:
            finish_leaf(target, entry, create_graph, capture_keys, captured)

    def deliver_nothing(target):
        """A formula returned None for an input that needs a gradient: that edge is done,
        with nothing on it. A target whose every edge delivered nothing has no gradient
        and passes the nothing on, so targets below it still complete."""
        pending = [target]
        while pending:
            target = pending.pop()
            remaining = dependencies[target] - 1
            dependencies[target] = remaining
            if remaining:
                continue
            if target in buffers:
                if type(target) is Node:
                    push(ready, (-target.seq, target, buffers.pop(target)))
                else:
                    finish_leaf(target, buffers.pop(target), create_graph, capture_keys, captured)
            elif type(target) is Node:
                if not retain_graph:
                    target.release()
                pending.extend(edge[0] for edge in target.next_edges if edge is not None)

    previous_mode = grad_mode.state.enabled
    previous_run = accumulation.run
    grad_mode.state.enabled = create_graph
    accumulation.run = _BackwardRun() if capture is None and not create_graph else None
    try:
        for edge, grad in zip(root_edges, root_grads):
            deliver(edge[0], edge[1], grad, False)
        while ready:
            _, node, entry = pop(ready)
            single = node.n_outputs == 1
            if single:
                grads_in = [entry[0]]
            else:
                grads_in = [None if slot is None else slot[0] for slot in entry]
            if node.output_hooks:
                grads_in = _run_output_hooks(node, grads_in)
            if capture_keys is not None:
                for output_nr, grad in enumerate(grads_in):
                    for index in capture_keys.get((id(node), output_nr), ()):
                        captured[index] = grad
            if node.released:
                node.saved_tensors  # raises the "backward a second time" error
            grads_arg = grads_in[0] if single else tuple(grads_in)
            if anomaly_state.enabled:
                input_grads = anomaly_mode.run_backward_checked(node, grads_arg)
            else:
                input_grads = node.backward_fn(node, grads_arg)
            if not retain_graph and node.saved:
                node.release()
            for edge, grad in zip(node.next_edges, input_grads):
                if edge is None:
                    continue
                if grad is None:
                    deliver_nothing(edge[0])
                    continue
                # NOTE [ Gradient ownership ]: fresh arrays only, never a formula's own input
                owned = grad._data.base is None and (grad is not grads_arg if single else not _is_one_of(grad, grads_in))
                deliver(edge[0], edge[1], grad, owned)
        if capture is None and _end_callbacks.pending:
            callbacks, _end_callbacks.pending = _end_callbacks.pending, []
            for callback in callbacks:
                callback()
    except BaseException:
        if capture is None:  # a failed backward's end callbacks must not run at the end of the next one
            _end_callbacks.pending = []
        raise
    finally:
        grad_mode.state.enabled = previous_mode
        if accumulation.run is not None:
            accumulation.run.finished = True
        accumulation.run = previous_run
    return captured


def _count_dependencies(root_edges):
    """{target: how many edges lead into it} for every node and leaf reachable from the roots
    (a root counts as one edge). Iterative, so 10,000-op chains work."""
    dependencies = {}
    stack = []
    edges = root_edges
    while True:
        for edge in edges:
            if edge is not None:
                target = edge[0]
                if target in dependencies:
                    dependencies[target] += 1
                else:
                    dependencies[target] = 1
                    if type(target) is Node:
                        stack.append(target)
        if not stack:
            return dependencies
        edges = stack.pop().next_edges


class _EndCallbacks(threading.local):
    pending = ()


_end_callbacks = _EndCallbacks()


def queue_callback(callback):
    """Run `callback()` once, when the next backward that accumulates into `.grad` (on this
    thread) has finished its walk: every leaf gradient is in place. The data-parallel
    reducer waits for its last allreduces here."""
    if not _end_callbacks.pending:
        _end_callbacks.pending = []
    _end_callbacks.pending.append(callback)


class _BackwardRun:
    """One backward that accumulates into `.grad`: what a flat-gradient claim belongs to."""

    __slots__ = ("finished",)

    def __init__(self):
        self.finished = False


class _Accumulation(threading.local):
    """The backward running on this thread, when it accumulates into `.grad` (not autograd.grad,
    not create_graph): only then may an op write a leaf's gradient into its flat slot
    (flat.claim_flat_gradient). Nested backwards (a checkpointing Function's) get their own."""

    run = None


accumulation = _Accumulation()


def _accumulate(current, grad, owned, create_graph):
    """Add one more gradient contribution to a pending (tensor, owned) entry."""
    if current is None:
        return (grad, owned)
    if current[1] and not create_graph:
        current[0]._data += grad._data  # the engine's own array: sum in place
        return current
    return (current[0] + grad, True)


def _is_one_of(tensor, candidates):
    for candidate in candidates:
        if candidate is tensor:
            return True
    return False


def _run_output_hooks(node, grads_in):
    for output_nr, hooks in node.output_hooks.items():
        grad = grads_in[output_nr]
        if grad is None:
            continue
        for hook in list(hooks):
            replacement = hook(grad)
            if replacement is not None:
                grad = replacement
        grads_in[output_nr] = grad
    return grads_in


def finish_leaf(leaf, slot, create_graph, capture_keys, captured):
    """A leaf's gradient for this backward is complete: hooks, then `.grad` or capture."""
    grad, owned = slot
    if leaf._hooks:
        for hook in list(leaf._hooks):
            replacement = hook(grad)
            if replacement is not None:
                grad, owned = replacement, False
    if capture_keys is not None:
        for index in capture_keys.get((id(leaf), 0), ()):
            captured[index] = grad
        return
    existing = leaf._grad
    if create_graph:
        leaf._grad = grad if existing is None else existing + grad
    elif existing is None:
        flat_grad = leaf._flat_grad
        claim = leaf.__dict__.get("_flat_grad_claim") if flat_grad is not None else None
        if flat_grad is not None and (claim is None or claim.finished or claim is accumulation.run):
            # NOTE [ Flat gradients ] in engine/flat.py
            if grad is not flat_grad:  # unless the op already wrote it there (claim_flat_gradient)
                flat_grad._data[...] = grad._data
            flat_grad._version_counter[0] += 1
            leaf._grad = flat_grad
            leaf._flat_grad_claim = None
        elif flat_grad is not None:
            # Another backward still running (this one is nested in it, or on another thread)
            # holds its pending gradient in the slot: keep ours elsewhere; that backward adds
            # its part into this .grad when it finishes.
            leaf._grad = grad._detached_copy()
        else:
            leaf._grad = grad._detached_alias() if owned else grad._detached_copy()
    else:
        if existing.shape != grad.shape:
            raise AutogradError(f"cannot accumulate a gradient of shape {tuple(grad.shape)} into .grad of shape {tuple(existing.shape)}")
        existing._data += grad._data
        existing._version_counter[0] += 1
    if leaf._post_accumulate_hooks:
        for hook in list(leaf._post_accumulate_hooks):
            hook(leaf)


def check_root(tensor, grad, index=0):
    """Validate a backward root and its gradient; return the gradient to start from."""
    if not tensor._requires_grad and tensor.dtype.kind != "f":
        raise DTypeError(
            f"backward() of a tensor of dtype {tensor.dtype}: gradients exist only for floating-point tensors. "
            "Compute the loss from float tensors (e.g. x.float()) whose leaves have requires_grad=True."
        )
    if not tensor._requires_grad:
        raise AutogradError(
            f"element {index} of tensors does not require grad and does not have a grad_fn: "
            "nothing in its graph needs a gradient. Create the leaves with requires_grad=True."
        )
    if grad is None:
        if tensor._data.size != 1:
            raise AutogradError(
                f"grad can be implicitly created only for scalar outputs: backward() was called on a "
                f"tensor of shape {tuple(tensor.shape)}. Reduce it (e.g. .sum()) or pass gradient= of that shape."
            )
        return tensor._ones_like_detached()
    if tuple(grad.shape) != tuple(tensor.shape):
        raise AutogradError(
            f"gradient has shape {tuple(grad.shape)} but the tensor it is the gradient of has shape {tuple(tensor.shape)}"
        )
    if grad.dtype.kind != "f":
        raise DTypeError(f"gradient must be floating point, got dtype {grad.dtype}")
    return grad
