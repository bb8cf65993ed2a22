"""Common-subexpression elimination: the same call on the same arrays twice is computed once.

Backward formulas often repeat a forward computation (`W.T` for each use, the same
product in both branches of a square). Two instructions are the same when their kind,
target and arguments are equal (arrays by slot, numbers by their exact value and type);
the second is dropped and its readers read the first. Only calls that neither write nor
draw nor check qualify, and neither result nor argument memory may be written in place
anywhere in the graph (then "the same" could stop being true between the two).
"""
from __future__ import annotations

from dataclasses import replace

from ..graph import Ref, map_refs
from .analysis import Analysis


def _frozen(value):
    kind = type(value)
    if kind is Ref:
        return ("ref", value.slot)
    if kind is tuple or kind is list:
        return (kind.__name__, tuple(_frozen(item) for item in value))
    if kind is dict:
        return ("dict", tuple((key, _frozen(item)) for key, item in value.items()))
    if kind is slice:
        return ("slice", _frozen(value.start), _frozen(value.stop), _frozen(value.step))
    if kind is float:
        return ("float", repr(value))  # 0.0 and -0.0 are different constants
    if value is None or kind in (int, bool, str) or value is Ellipsis:
        return (kind.__name__, value)
    return ("object", id(value), kind.__name__, repr(value)[:200])


def eliminate_common_subexpressions(graph):
    """(graph with repeated pure calls merged, number merged)."""
    analysis = Analysis(graph)
    seen = {}
    renamed = {}
    keep, merged = [], 0
    for instruction in graph.instructions:
        if renamed:
            instruction = replace(instruction, args=map_refs(instruction.args, lambda ref: renamed.get(ref.slot, ref)),
                                  kwargs=map_refs(instruction.kwargs, lambda ref: renamed.get(ref.slot, ref)))
        if _pure(instruction, analysis):
            key = (instruction.kind, _target_key(instruction.target) if instruction.kind == "call" else instruction.target,
                   _frozen(instruction.args), _frozen(instruction.kwargs), instruction.errstate)
            first = seen.get(key)
            if first is not None:
                for slot, earlier in zip(instruction.outputs, first.outputs):
                    renamed[slot] = Ref(earlier)
                merged += 1
                continue
            seen[key] = instruction
        keep.append(instruction)
    if not merged:
        return graph, 0
    output = map_refs(graph.output, lambda ref: renamed.get(ref.slot, ref))
    values = [value if value.root not in renamed else replace(value, root=renamed[value.root].slot)
              for value in graph.values]  # a view of a dropped result is a view of the one kept
    return replace(graph, instructions=keep, output=output, values=values), merged


def _target_key(target):
    owner = getattr(target, "__self__", None)  # numpy.add.reduce is a new bound method at every access
    return (id(owner), getattr(target, "__name__", None)) if owner is not None else (id(target), None)


def _pure(instruction, analysis):
    if instruction.writes or instruction.effect or instruction.kind in ("draw", "inplace", "setitem"):
        return False
    if not instruction.outputs or any(analysis.written(slot) or analysis.root[slot] in analysis.pinned
                                      for slot in instruction.outputs):
        return False  # written later, or handed to the caller (two results must not become one array)
    return not any(analysis.written(slot) for slot in instruction.reads())
