"""A replayable program: the generated function plus what turns tensors into its arrays and back.

Replaying is: take the arrays of the input tensors, call the generated function (the
recorded array calls, nothing else), set the `.grad` attributes the capture set, and
wrap the returned arrays as tensors. No Tensor is made inside, no autograd node is
recorded, no op's Python code runs.
"""
from __future__ import annotations

import numpy

from ..autograd import grad_mode
from ..autograd.graph import record
from ..tensor import _make
from .capture import Capture
from .codegen import generate
from .errors import CaptureError
from .structure import unflatten


class Program:
    """The replay of one capture (see the module docstring)."""

    def __init__(self, capture: Capture, plan=None, graph=None):
        self.capture = capture
        self.graph = capture.graph if graph is None else graph  # the optimised graph (optimize.py)
        self.generated = generate(self.graph, plan)
        self.function = self.generated.function
        self.leaf_kinds = capture.leaf_kinds
        self.output_spec = capture.output_spec
        self.bindings = capture.grad_bindings
        self._tensor_leaves = tuple(kind == "tensor" for kind in capture.leaf_kinds)
        # outputs that had an autograd history when captured get a node that explains why there is none now
        self.differentiable = capture.differentiable_outputs

    @property
    def source(self) -> str:
        return self.generated.source

    def input_arrays(self, leaves):
        """The arrays the generated function takes, from the call's flattened leaves (each distinct one once)."""
        tensor_leaves = self._tensor_leaves
        return [leaves[i]._data if tensor_leaves[i] else leaves[i] for i in self.capture.input_positions]

    def run_arrays(self, arrays):
        """The generated function on raw arrays: (output arrays, arrays of new .grad tensors)."""
        return self.function(*arrays)

    def run(self, leaves):
        """Replay on the flattened input leaves (tensors or arrays); the result structure."""
        arrays = self.input_arrays(leaves)
        outputs, new_grads = self.function(*arrays)
        if self.bindings:
            self._bind_grads(leaves, new_grads)
        return self.wrap(outputs)

    def _bind_grads(self, leaves, new_grads):
        fresh = iter(new_grads)
        for owner, how, what in self.bindings:
            tensor = leaves[owner] if type(owner) is int else owner
            if how == "flat":
                grad = tensor._flat_grad
                grad._version_counter[0] += 1
            elif how == "slot":
                grad = _make(next(fresh))
            elif how == "tensor":
                grad = what
            else:
                grad = None
            tensor._grad = grad

    def wrap(self, outputs):
        spec = self.output_spec
        if spec[0] == "tensor" and not self.differentiable:  # the common case: one tensor
            return _make(_as_array(outputs[0]))
        kinds = []
        _leaf_kinds(spec, kinds)
        leaves = [_make(_as_array(array)) if kind == "tensor" else array for array, kind in zip(outputs, kinds)]
        if self.differentiable and grad_mode.state.enabled:
            for index in self.differentiable:
                record("TracedGraph", _no_backward, (), (leaves[index],))
        return unflatten(spec, iter(leaves))


def _no_backward(node, grad):
    raise CaptureError(
        "distrain.jit: backward through the output of a traced graph: a trace replays what the function did, "
        "and this function computed the output without differentiating it. To train with a static graph, "
        "capture the whole step (distrain.jit.compile_step(model, loss_fn, optimizer)) or trace a function "
        "that calls backward itself.")


def _as_array(value):
    return numpy.asarray(value) if isinstance(value, numpy.generic) else value


def _leaf_kinds(spec, found):
    kind = spec[0]
    if kind in ("tensor", "array"):
        found.append(kind)
    elif kind in ("tuple", "list"):
        for item in spec[1]:
            _leaf_kinds(item, found)
    elif kind in ("dict", "namedtuple"):
        for item in spec[2]:
            _leaf_kinds(item, found)
