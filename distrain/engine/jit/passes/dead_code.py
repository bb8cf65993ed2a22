"""Dead-code elimination: drop instructions whose results nobody reads and whose writes nobody sees.

Walking backwards, a root is needed once a later instruction reads it or it is pinned
(returned, state, input, constant). An instruction stays when it writes a needed root,
produces one, checks values (it may raise), or draws random numbers (dropping a draw
would shift every later draw, and replays must draw exactly as eager does).
"""
from __future__ import annotations

from dataclasses import replace

from .analysis import Analysis


def eliminate_dead_code(graph):
    """(graph without dead instructions, number removed)."""
    analysis = Analysis(graph)
    root = analysis.root
    needed = set(analysis.pinned)
    keep = []
    for instruction in reversed(graph.instructions):
        live = instruction.effect or instruction.kind == "draw" \
            or any(root[slot] in needed for slot in instruction.writes) \
            or any(root[slot] in needed for slot in instruction.outputs)
        if live:
            keep.append(instruction)
            needed.update(root[slot] for slot in instruction.reads())
    keep.reverse()
    removed = len(graph.instructions) - len(keep)
    return (replace(graph, instructions=keep) if removed else graph), removed
