"""Elementwise fusion: chains of elementwise ops whose intermediate results nothing else reads.

`y = tanh(x * w + b) * s` eagerly is four passes over memory, each allocating its result.
A group is such a chain: each intermediate is a fresh result read once, by the next op of
the group, and by nothing else (not returned, not viewed, not written). How a group runs:

- on the CPU, in one buffer: the buffer plan (buffers.py) writes each op of the chain
  into the dying intermediate (`out=`), so the chain allocates once and stays in cache
  for small arrays; the ops and their rounding are NumPy's, bit for bit;
- on the GPU, as one kernel: cuda_fusion.py generates a CuPy ElementwiseKernel computing
  the chain per element (with the ufuncs' own CUDA math functions and no contraction of
  multiply-adds, so the rounding is that of the separate kernels), one launch and one
  pass over memory instead of one per op.

This pass finds the groups (explain() lists them) and, for groups on CuPy arrays,
replaces them by their kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy

from ..graph import Ref
from .analysis import Analysis
from .buffers import OPERATOR_UFUNCS, UNARY_UFUNCS


@dataclass
class Group:
    """A fused chain: instruction indices in order, and the slot the chain computes."""

    indices: tuple
    output: int
    names: tuple  # the ufuncs, for explain()
    on_gpu: bool

    def __len__(self):
        return len(self.indices)


def elementwise_name(instruction):
    """The ufunc name of an elementwise instruction with one result, or None."""
    if instruction.writes or instruction.kwargs or len(instruction.outputs) != 1:
        return None
    if instruction.kind == "call":
        target = instruction.target
        if isinstance(target, numpy.ufunc) or (hasattr(target, "nin") and hasattr(target, "nout")
                                               and hasattr(target, "reduce")):
            return target.__name__ if target.nout == 1 else None
        return None
    if instruction.kind == "operator":
        table = OPERATOR_UFUNCS if len(instruction.args) == 2 else UNARY_UFUNCS
        name = table.get(instruction.target)
        return None if name == "matmul" else name
    return None


def find_groups(graph):
    """The fusable chains of `graph` (see the module docstring), each of two ops or more."""
    analysis = Analysis(graph)
    values = graph.values
    readers = {}
    for index, instruction in enumerate(graph.instructions):
        for slot in instruction.reads():
            readers.setdefault(slot, []).append(index)
    views = {value.root for value in values if value.root != value.slot}
    groups, taken = [], set()
    names = [elementwise_name(instruction) for instruction in graph.instructions]
    for start, instruction in enumerate(graph.instructions):
        if start in taken or names[start] is None:
            continue
        chain, current = [start], start
        while True:
            slot = graph.instructions[current].outputs[0]
            users = readers.get(slot, [])
            value = values[slot]
            if len(users) != 1 or slot in analysis.pinned or slot in views or analysis.written(slot) \
                    or value.root != slot or names[users[0]] is None or users[0] in taken:
                break
            consumer = graph.instructions[users[0]]
            if sum(1 for arg in consumer.args if type(arg) is Ref and arg.slot == slot) != 1:
                break
            if values[consumer.outputs[0]].shape != value.shape:
                break  # the chain broadcasts into a bigger result: a new pass over memory anyway
            chain.append(users[0])
            current = users[0]
        if len(chain) > 1:
            taken.update(chain)
            output = graph.instructions[chain[-1]].outputs[0]
            on_gpu = values[output].array_type is not None and values[output].array_type.__module__.startswith("cupy")
            groups.append(Group(tuple(chain), output, tuple(names[i] for i in chain), on_gpu))
    return groups


def fuse_elementwise(graph):
    """(graph with GPU groups replaced by their generated kernels, all groups found)."""
    groups = find_groups(graph)
    gpu_groups = [group for group in groups if group.on_gpu]
    if gpu_groups:
        from .cuda_fusion import replace_with_kernels

        graph = replace_with_kernels(graph, gpu_groups)
    return graph, groups
