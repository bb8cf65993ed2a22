"""Guards: a replay runs only on what the graph was captured for, and says what changed otherwise.

Checked on every replay, in this order of cost:
  1. the inputs' key: the structure and Python values around the tensors, and each
     tensor's array type (device), shape, dtype, strides and requires_grad, and whether
     grad mode is on — a dictionary lookup finds the graph captured for that key;
  2. the modules: one counter that every module attribute change, train()/eval() and
     layer swap bumps (nn/module.py); when it moved, a closer look decides whether
     anything this graph depends on changed (training flags, attributes, registries);
  3. the state: each bound parameter, gradient and buffer still has the array the graph
     reads and writes (`p.data = ...`, `model.double()`, repacking replace them), and the
     parameters' requires_grad flags are unchanged.
A failed check means retrace (a bounded cache of graphs, as torch.compile recompiles) or,
with retracing off or the cache full, a GuardError listing every difference.
"""
from __future__ import annotations

import operator

from .. import dtypes
from ..autograd import anomaly_mode, grad_mode
from ..nn import module as module_registry
from ..tensor import Tensor
from .side_effects import ModuleSnapshot
from .structure import describe_difference, flatten

_get_data = operator.attrgetter("_data")
_get_requires_grad = operator.attrgetter("_requires_grad")
_get_grad = operator.attrgetter("_grad")


_TENSOR_SPECS = {}  # the spec of n positional tensors and no keywords (the usual call), made once per n


def input_key(args, kwargs):
    """(key, leaves) of a call: the key guards (1) above; leaves are the flattened tensors/arrays."""
    if not kwargs and all(isinstance(arg, Tensor) for arg in args):
        spec = _TENSOR_SPECS.get(len(args))
        if spec is None:
            spec = _TENSOR_SPECS[len(args)] = flatten((tuple(args), {}), [])
        leaves = list(args)
    else:
        leaves = []
        spec = flatten((tuple(args), dict(kwargs)), leaves)
    metadata = []
    for leaf in leaves:
        if isinstance(leaf, Tensor):
            data = leaf._data
            metadata.append((type(data), data.shape, data.dtype, data.strides, leaf._requires_grad,
                             getattr(getattr(data, "device", None), "id", None),
                             leaf._requires_grad and leaf._grad is not None))
        else:
            metadata.append((type(leaf), leaf.shape, leaf.dtype, leaf.strides, False, None, False))
    aliases = tuple(next(i for i, other in enumerate(leaves) if other is leaf) for leaf in leaves)
    overlaps = _overlaps(leaves) if len(leaves) > 1 else ()
    return (spec, tuple(metadata), aliases, grad_mode.state.enabled, overlaps, dtypes.get_default_dtype(),
            anomaly_mode.state.enabled), leaves


def _overlaps(leaves):
    """The pairs of distinct inputs whose memory may overlap (views of one array): a graph assumes none or these."""
    arrays = [leaf._data if isinstance(leaf, Tensor) else leaf for leaf in leaves]
    arrays = [getattr(array, "concrete", array) for array in arrays]
    return tuple((i, j) for i in range(len(arrays)) for j in range(i + 1, len(arrays))
                 if arrays[i] is not arrays[j] and type(arrays[i]) is type(arrays[j])
                 and _may_share(arrays[i], arrays[j]))


def _may_share(a, b):
    import numpy

    return numpy.may_share_memory(a, b) if isinstance(a, numpy.ndarray) else a.data.ptr == b.data.ptr


def describe_key_difference(captured, given) -> list:
    """Every difference between two input keys, in words."""
    found = []
    spec_difference = describe_difference(captured[0], given[0])
    if spec_difference:
        found.append(spec_difference)
    for index, (a, b) in enumerate(zip(captured[1], given[1])):
        for label, position in (("array type (device)", 0), ("shape", 1), ("dtype", 2), ("strides", 3),
                                ("requires_grad", 4), ("CUDA device", 5), ("having a .grad", 6)):
            if a[position] != b[position]:
                shown = (lambda v: tuple(v) if isinstance(v, tuple) else getattr(v, "__name__", v))
                found.append(f"input {index}: {label} was {shown(a[position])} when captured, is "
                             f"{shown(b[position])} now")
    if len(captured[1]) != len(given[1]):
        found.append(f"{len(captured[1])} tensors were passed when captured, {len(given[1])} now")
    if captured[2] != given[2] and len(captured[1]) == len(given[1]):
        found.append("the same tensor was passed in several places when captured and not now (or the reverse)")
    if captured[3] != given[3]:
        found.append(f"grad mode was {'on' if captured[3] else 'off'} when captured and is "
                     f"{'on' if given[3] else 'off'} now")
    if captured[4] != given[4]:
        found.append(f"inputs sharing memory: {list(captured[4])} when captured, {list(given[4])} now")
    if captured[5] != given[5]:
        found.append(f"the default dtype was {captured[5]} when captured and is {given[5]} now")
    if captured[6] != given[6]:
        found.append(f"anomaly detection was {'on' if captured[6] else 'off'} when captured")
    if len(captured) > 7 and captured[7] != given[7]:
        found.append("the modules' training/eval modes differ from those of every captured graph")
    return found


class StateGuard:
    """Guards (2) and (3) for one captured graph."""

    def __init__(self, capture):
        self.tensors = tuple(tensor for _, tensor in capture.state_tensors)
        self.names = tuple(name for name, _ in capture.state_tensors)
        self.arrays = tuple(tensor._data for tensor in self.tensors)
        self.requires_grad = tuple(tensor._requires_grad for tensor in self.tensors)
        # which leaves had a .grad when captured: a backward assigns a first gradient, but adds to one there
        self.leaves = tuple(tensor for tensor in self.tensors if tensor._requires_grad and tensor.grad_fn is None)
        self.had_grad = tuple(id(tensor) in capture.had_grad for tensor in self.leaves)  # before the capture ran
        self.modules = capture.modules
        self.snapshot = ModuleSnapshot(capture.modules, ignore=("training",))  # modes are in the key
        self.changes = module_registry.changes[0]

    def holds(self, check_grads=True) -> bool:
        if module_registry.changes[0] != self.changes:
            if self.snapshot.differences({}, strict=True):
                return False
            self.changes = module_registry.changes[0]  # only unrelated modules changed
        return all(map(operator.is_, map(_get_data, self.tensors), self.arrays)) and \
            tuple(map(_get_requires_grad, self.tensors)) == self.requires_grad and \
            (not check_grads or tuple(grad is not None for grad in map(_get_grad, self.leaves)) == self.had_grad)

    def differences(self, check_grads=True) -> list:
        """Every change that makes this graph wrong now, in words."""
        found = self.snapshot.differences({}, strict=True)
        for name, tensor, array, requires_grad in zip(self.names, self.tensors, self.arrays, self.requires_grad):
            if tensor._data is not array:
                found.append(f"`{name}` now has another array (assigned .data, moved, or repacked)")
            if tensor._requires_grad != requires_grad:
                found.append(f"`{name}.requires_grad` is {tensor._requires_grad} now")
        for tensor, had in zip(self.leaves, self.had_grad if check_grads else ()):
            if (tensor._grad is not None) != had:
                name = next(n for n, t in zip(self.names, self.tensors) if t is tensor)
                found.append(f"`{name}.grad` was {'set' if had else 'None'} when captured and is "
                             f"{'None' if had else 'set'} now (a backward would {'assign' if had else 'add to'} it)")
        return found
