"""What the passes need to know about a graph: memory roots, who reads and writes them, and when.

Arrays share memory through views, so facts are kept per *root* (the slot owning the
memory, `Value.root`): an instruction that reads a view reads its root; one that writes
into a view writes its root. A root is "pinned" when its memory outlives a replay or is
the caller's (inputs, state, constants, anything returned): passes never reuse, fold or
drop writes into pinned memory.
"""
from __future__ import annotations

from ..graph import Graph, _collect_refs


class Analysis:
    """Per-root facts of `graph` (see the module docstring)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        values = graph.values
        self.root = [value.root for value in values]
        self.readers = {}  # root -> [instruction index]
        self.writers = {}  # root -> [instruction index]
        self.last_use = {}  # root -> the last instruction index touching it (reading, writing or viewing)
        for index, instruction in enumerate(graph.instructions):
            for slot in instruction.reads():
                root = self.root[slot]
                self.readers.setdefault(root, []).append(index)
                self.last_use[root] = index
            for slot in instruction.writes:
                root = self.root[slot]
                self.writers.setdefault(root, []).append(index)
                self.last_use[root] = index
            for slot in instruction.outputs:
                self.last_use[self.root[slot]] = max(self.last_use.get(self.root[slot], index), index)
        returned = []
        _collect_refs(graph.output, returned)
        self.pinned = {self.root[slot] for slot in returned}
        self.pinned |= {self.root[value.slot] for value in values if value.kind != "result"}
        self.end = len(graph.instructions)
        for root in self.pinned:
            self.last_use[root] = self.end  # alive to the end of the replay (and after)

    def written(self, slot) -> bool:
        return self.root[slot] in self.writers

    def is_fresh_result(self, slot) -> bool:
        """A slot that owns memory a replay allocates anew (not a view, not pinned)."""
        value = self.graph.values[slot]
        return value.kind == "result" and value.root == slot and slot not in self.pinned
