"""The recorded graph: one `Node` per op that produced a tensor needing a gradient.

A node knows the function that turns the gradients of its outputs into gradients of its
inputs (`backward_fn`), where each input's gradient goes next (`next_edges`), and the
tensors it saved for that. Every primitive op and every user `autograd.Function` builds
its node through `record`, so there is one graph mechanism in distrain.

An edge is `(target, output_nr)`: target is the producing `Node` of a non-leaf input, or
the leaf `Tensor` itself (its gradient is accumulated into `.grad`), or the edge is None
when that input needs no gradient.

NOTE [ Saved tensors and the version counter ]
A node saves input tensors as they are and output tensors as detached aliases (an output
holding its own node would make a reference cycle that only the garbage collector could
free). With each saved tensor the node records the tensor's version: every in-place op
bumps the version counter its views share, so `saved_tensors` detects a saved value that
was overwritten after the forward pass and raises, naming the op, instead of computing a
silently wrong gradient. When backward runs with create_graph=True, saved outputs are
re-attached to this node so that second derivatives flow through them.
"""
from __future__ import annotations

import itertools
import weakref

from ...errors import AutogradError
from . import anomaly_mode, grad_mode

anomaly_state = anomaly_mode.state  # read on every op: one attribute lookup when off

_sequence = itertools.count()


class Node:
    """One recorded op: `backward_fn(node, grad_output) -> tuple of input gradients`.

    Attributes an op rarely sets (saved tensors, args, hooks) default at class level, so
    recording a node costs a handful of attribute writes.
    """

    args = None
    saved = ()
    saved_versions = ()
    saved_output_nrs = None
    n_outputs = 1
    output_hooks = None
    released = False
    name_suffix = "Backward0"  # PyTorch's naming: DivBackward0; a user Function's node is MyFunctionBackward
    forward_stack = None  # where the forward ran, recorded only in anomaly mode

    def __init__(self, name, backward_fn, next_edges):
        self.op_name = name  # 'Mul': the op; name() gives PyTorch's 'MulBackward0'
        self.backward_fn = backward_fn
        self.next_edges = next_edges
        self.seq = next(_sequence)

    # -- what backward formulas read --------------------------------------------------
    @property
    def needs_input_grad(self):
        return tuple(edge is not None for edge in self.next_edges)

    @property
    def saved_tensors(self):
        """The tensors saved in forward, checked against in-place modification."""
        if self.released:
            raise AutogradError(
                f"trying to backward through the graph a second time (op '{self.op_name}'): its saved "
                "tensors were freed by the first backward. Pass retain_graph=True to the first "
                "backward() if you need to call it again."
            )
        saved = self.saved
        for position, (tensor, version) in enumerate(zip(saved, self.saved_versions)):
            if tensor is not None and tensor._version_counter[0] != version:
                raise AutogradError(
                    f"a tensor that op '{self.op_name}' saved for backward (saved tensor {position}, shape "
                    f"{tuple(tensor.shape)}) was modified by an in-place operation: it is at version "
                    f"{tensor._version_counter[0]}, the graph expected version {version}. Use an "
                    "out-of-place op (e.g. `x = x + 1` instead of `x += 1`) or .clone() before modifying it."
                )
        if self.saved_output_nrs is not None and grad_mode.state.enabled:
            saved = list(saved)
            for position, output_nr in self.saved_output_nrs:
                saved[position] = saved[position]._attached_to(self, output_nr)
            saved = tuple(saved)
        return saved

    def release(self):
        """Drop saved tensors after backward (unless retain_graph) so their memory is freed."""
        if self.saved:
            self.released = True
            self.saved = ()

    def register_output_hook(self, output_nr, hook):
        if self.output_hooks is None:  # instance attribute from now on
            self.output_hooks = {}
        self.output_hooks.setdefault(output_nr, []).append(hook)
        return RemovableHandle(self.output_hooks[output_nr], hook)

    def name(self) -> str:
        """PyTorch's name for this node: 'MulBackward0' (a user Function's node: 'MyFunctionBackward')."""
        return self.op_name + self.name_suffix

    @property
    def next_functions(self):
        """PyTorch's view of where this node's input gradients go: one `(node, output_nr)` per input.

        A non-leaf input gives the node that produced it; a leaf needing a gradient gives
        its `AccumulateGrad` (whose `.variable` is the leaf); an input needing none gives
        `(None, 0)`. Graph-walking code written for PyTorch (printing a graph, counting
        its nodes) runs unchanged over it.
        """
        return tuple((None, 0) if edge is None
                     else (edge[0], edge[1]) if isinstance(edge[0], Node)
                     else (accumulate_grad_of(edge[0]), 0)
                     for edge in self.next_edges)

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"


class AccumulateGrad:
    """A leaf's end of the graph as `next_functions` shows it: where gradients pile into `.grad`.

    distrain's engine accumulates into the leaf directly and keeps no such node; this is
    the view PyTorch programs expect, made on request. While one is alive, asking again for
    the same leaf gives the same object (as in PyTorch, so `is` comparisons hold).
    """

    __slots__ = ("variable", "__weakref__")
    next_functions = ()

    def __init__(self, variable):
        self.variable = variable

    def name(self) -> str:
        return "distrain::autograd::AccumulateGrad"  # PyTorch's: 'torch::autograd::AccumulateGrad'

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


# id(leaf) -> its AccumulateGrad. The AccumulateGrad holds the leaf, so the id cannot be reused
# while the entry exists; the entry goes when the AccumulateGrad does.
_accumulators = weakref.WeakValueDictionary()


def accumulate_grad_of(leaf) -> AccumulateGrad:
    accumulator = _accumulators.get(id(leaf))
    if accumulator is None:
        accumulator = _accumulators[id(leaf)] = AccumulateGrad(leaf)
    return accumulator


class RemovableHandle:
    """Returned by every register_*_hook: `handle.remove()` unregisters the hook."""

    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks: list, hook):
        self._hooks = hooks
        self._hook = hook

    def remove(self):
        try:
            self._hooks.remove(self._hook)
        except ValueError:
            pass  # removed twice: harmless, as in PyTorch

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


def edge_to(tensor):
    """Where the gradient of `tensor` should flow, or None if it needs none."""
    if tensor is None or not getattr(tensor, "_requires_grad", False):
        return None
    node = tensor.grad_fn
    if node is not None:
        return (node, tensor._output_nr)
    return (tensor, 0)


def record(name, backward_fn, inputs, outputs, saved=(), args=None):
    """Attach a new node producing `outputs` from `inputs`; call only when a gradient is needed.

    `inputs` are the op's tensor arguments in the order `backward_fn` returns gradients
    for them (non-tensors may appear and get no edge); `saved` lists the tensors the
    formula needs, inputs or outputs (None for an optional input that is absent); `args` carries non-tensor parameters (axes, shapes).

    Every differentiable op calls this once per forward, so it is written for that: one pass
    over `inputs` and one over `saved`, and the single-output case (nearly every op) without
    a loop over outputs.
    """
    edges = []
    for tensor in inputs:
        if getattr(tensor, "_requires_grad", False):
            producer = tensor.grad_fn
            edges.append((tensor, 0) if producer is None else (producer, tensor._output_nr))
        else:
            edges.append(None)
    node = Node(name, backward_fn, tuple(edges))
    if anomaly_state.enabled:
        node.forward_stack = anomaly_mode.forward_stack()
    if args is not None:
        node.args = args
    if saved:
        _save(node, saved, outputs)
    if len(outputs) == 1:
        output = outputs[0]
        node.output_dtype = output._data.dtype
        output.grad_fn = node
        output._output_nr = 0  # an in-place op re-records a tensor that may have been output 1 of another node
        output._requires_grad = True
        return node
    node.n_outputs = len(outputs)
    node.output_dtype = outputs[0]._data.dtype if outputs else None
    for output_nr, output in enumerate(outputs):
        output.grad_fn = node
        output._output_nr = output_nr
        output._requires_grad = True
    return node


def _save(node, saved, outputs):
    """Keep `saved` on `node` with their versions (NOTE [ Saved tensors and the version counter ]);
    outputs among them are kept as aliases that do not lead back to the node."""
    tensors = []
    versions = []
    for tensor in saved:
        if tensor is None:
            versions.append(None)
        else:
            for output in outputs:
                if output is tensor:  # identity: == is elementwise on tensors
                    if node.saved_output_nrs is None:
                        node.saved_output_nrs = []
                    node.saved_output_nrs.append((len(tensors), _index_by_identity(outputs, tensor)))
                    tensor = tensor._saved_alias()
                    break
            versions.append(tensor._version_counter[0])
        tensors.append(tensor)
    node.saved = tuple(tensors)
    node.saved_versions = tuple(versions)


def _index_by_identity(items, target):
    for index, item in enumerate(items):
        if item is target:
            return index
    return None


def needs_grad(*tensors) -> bool:
    """True when grad mode is on and any argument is a tensor that requires grad."""
    if not grad_mode.state.enabled:
        return False
    for t in tensors:
        if getattr(t, "_requires_grad", False):
            return True
    return False
