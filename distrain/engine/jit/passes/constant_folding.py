"""Constant folding: an instruction that reads only constants is computed once, when the graph is built.

With capture at the array level most constants are folded already (plain arrays meet
the graph as constants), but ops create arrays through the recording module too:
`xp.zeros(shape)`, `xp.asarray(0.5, dtype)`, `xp.ones_like(loss)` (whose value depends
only on the static shape), and arithmetic on those. Folding them saves their replay.
Nothing is folded whose memory is written in place later, or read before such a write:
a folded array is shared by every replay.
"""
from __future__ import annotations

import sys
from dataclasses import replace

import numpy

from ..graph import map_refs
from .analysis import Analysis

SHAPE_ONLY = frozenset({"zeros_like", "ones_like", "full_like"})  # their value depends on the shape alone


def evaluate(instruction, value_of):
    """Run one instruction on concrete arrays (`value_of(slot)`); its result (used for folding only)."""
    args = map_refs(instruction.args, lambda ref: value_of(ref.slot))
    kwargs = map_refs(instruction.kwargs, lambda ref: value_of(ref.slot))
    kind = instruction.kind
    if kind == "call":
        return instruction.target(*args, **kwargs)
    if kind == "method":
        return getattr(args[0], instruction.target)(*args[1:], **kwargs)
    if kind == "attribute":
        return getattr(args[0], instruction.target)
    if kind == "operator":
        return instruction.function(*args)
    if kind == "getitem":
        return args[0][args[1]]
    raise ValueError(f"cannot evaluate a {kind} instruction")


def fold_constants(graph):
    """(graph with constant instructions folded into constants, number folded)."""
    analysis = Analysis(graph)
    constants = dict(graph.constants)
    values = list(graph.values)
    keep, folded = [], 0
    for instruction in graph.instructions:
        if _foldable(instruction, constants, analysis):
            result = evaluate(instruction, lambda slot: constants[slot] if slot in constants
                              else _placeholder(values[slot]))
            results = result if instruction.many else (result,)
            for slot, array in zip(instruction.outputs, results):
                constants[slot] = array
                values[slot] = replace(values[slot], kind="constant", producer=-1)
            folded += 1
            continue
        keep.append(instruction)
    if not folded:
        return graph, 0
    return replace(graph, instructions=keep, constants=constants, values=values), folded


def _placeholder(value):
    """An array of the value's type, shape and dtype (what a shape-only function reads of its argument)."""
    if value.array_type is not None and issubclass(value.array_type, numpy.generic):
        return value.array_type(0)
    module = numpy if value.array_type in (None, numpy.ndarray) else sys.modules[value.array_type.__module__.split(".")[0]]
    return module.empty(value.shape, dtype=value.dtype)


def _foldable(instruction, constants, analysis):
    if instruction.writes or instruction.effect or instruction.kind not in ("call", "method", "attribute", "operator",
                                                                         "getitem"):
        return False
    if not instruction.outputs or any(analysis.written(slot) or analysis.root[slot] in analysis.pinned
                                      for slot in instruction.outputs):
        return False
    name = getattr(instruction.target, "__name__", "")
    reads = [] if name in SHAPE_ONLY else instruction.reads()
    own = analysis.graph.by_reference
    return all(slot in constants and slot not in own and not analysis.written(slot) for slot in reads)

