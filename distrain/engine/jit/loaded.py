"""What `distrain.jit.load` returns: a saved graph that runs like the original, without its code.

`LoadedFunction` (a saved trace) is called like the traced function and returns tensors;
`LoadedStep` (a saved compile_step) is called as `loss = step(inputs, targets)` and
trains: zero_grad, the replay of forward and backward into the flat gradient buffers,
the restored optimizer's step. Both expose the weights under the model's names
(`named_parameters()`, `state_dict()`), so a user can read or export them.

There is no code to retrace with, so every call is guarded (`InputGuard`): the inputs
must have the structure, tensor/array kinds, devices, shapes, dtypes and layouts the
graph was captured with; anything else is a GuardError listing every difference.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy

from ..tensor import Tensor
from .errors import GuardError
from .structure import describe_difference, flatten


def _c_contiguous(shape, strides, itemsize):
    expected = itemsize
    for extent, stride in zip(reversed(shape), reversed(strides)):
        if extent == 0:
            return True
        if extent != 1 and stride != expected:
            return False
        expected *= extent
    return True


class InputGuard:
    """The inputs a saved graph was captured for; `check` returns the leaves of a call that matches."""

    def __init__(self, spec, leaves, aliases, path):
        self.spec = spec
        self.leaves = leaves  # per leaf: (kind "tensor"/"array", array module name, shape, dtype, strides)
        self.aliases = aliases
        self.path = path

    def check(self, args, kwargs):
        leaves = []
        spec = flatten((tuple(args), dict(kwargs)), leaves)
        found = []
        difference = describe_difference(self.spec, spec)
        if difference:
            found.append(difference)
        elif len(leaves) == len(self.leaves):
            for index, (leaf, saved) in enumerate(zip(leaves, self.leaves)):
                found += self._leaf_differences(index, leaf, saved)
            aliases = tuple(next(i for i, other in enumerate(leaves) if other is leaf) for leaf in leaves)
            if aliases != self.aliases:
                found.append("the same tensor was passed in several places when captured and not now (or the "
                             "reverse)")
        if found:
            raise GuardError(f"distrain.jit: this call differs from the one the saved graph {self.path} was captured "
                             "for, and a loaded graph cannot capture again (its code is not here):\n  - " +
                             "\n  - ".join(found) + "\nPass inputs like the captured ones, or trace the model again "
                             "for these inputs and save that graph.")
        return leaves

    @staticmethod
    def _leaf_differences(index, leaf, saved):
        _, module, shape, dtype, strides = saved  # the tensor/array kind is part of the spec
        array = leaf._data if isinstance(leaf, Tensor) else leaf
        given_module = "numpy" if isinstance(array, numpy.ndarray) else type(array).__module__.split(".")[0]
        found = []
        if given_module != module:
            found.append(f"input {index}: a {module} array (device) when captured, a {given_module} one now")
        if tuple(array.shape) != shape:
            found.append(f"input {index}: shape was {shape} when captured, is {tuple(array.shape)} now")
        if array.dtype != dtype:
            found.append(f"input {index}: dtype was {dtype} when captured, is {array.dtype} now")
        elif tuple(array.shape) == shape and tuple(array.strides) != strides and not (
                _c_contiguous(shape, strides, dtype.itemsize) and array.flags.c_contiguous):
            found.append(f"input {index}: strides were {strides} when captured, are {tuple(array.strides)} now "
                         "(pass a tensor laid out as then, e.g. .contiguous())")
        return found


class LoadedFunction:
    """A saved trace, loaded: call it like the traced function (see the module docstring).

    Attributes:
        graph: the loaded graph; code: its generated replay source; path: the file;
        generators: the private random generators it draws from (NOTE [ Saved graph format ]).
    """

    def __init__(self, program, guard, restored, parameter_names, state_dict_names, generators, path):
        self.program = program
        self.guard = guard
        self.path = path
        self.generators = generators
        self._parameters = OrderedDict((name, restored.parameters[name]) for name in parameter_names)
        self._buffers = OrderedDict(restored.buffers)
        tensors = {**restored.buffers, **restored.parameters}
        self._state_dict = [(key, tensors[name]) for key, name in state_dict_names]

    def __call__(self, *args, **kwargs):
        return self.program.run(self.guard.check(args, kwargs))

    @property
    def graph(self):
        return self.program.graph

    @property
    def code(self) -> str:
        return self.program.source

    def named_parameters(self):
        """(name, Parameter) in the original model's order and names."""
        return iter(self._parameters.items())

    def parameters(self):
        return iter(self._parameters.values())

    def named_buffers(self):
        return iter(self._buffers.items())

    def buffers(self):
        return iter(self._buffers.values())

    def state_dict(self):
        """The original model's state_dict keys, with the loaded tensors (detached views, as Module.state_dict)."""
        return OrderedDict((key, tensor.detach()) for key, tensor in self._state_dict)

    def __repr__(self):
        return (f"{type(self).__name__}({self.path!r}, {self.program.graph.op_count()} ops, "
                f"{len(self._parameters)} parameters)")


class LoadedStep(LoadedFunction):
    """A saved compile_step, loaded: `loss = step(inputs, targets)` trains on (see the module docstring).

    Attributes:
        optimizer: the restored optimizer (its state, step counts and param groups as saved;
            attach a new learning-rate scheduler to it if the original had one).
    """

    def __init__(self, program, guard, restored, parameter_names, state_dict_names, generators, path):
        super().__init__(program, guard, restored, parameter_names, state_dict_names, generators, path)
        self.optimizer = restored.optimizer

    def __call__(self, inputs, targets):
        leaves = self.guard.check((inputs, targets), {})
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.program.run(leaves)
        self.optimizer.step()
        return loss.detach() if loss.requires_grad else loss
