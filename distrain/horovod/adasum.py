"""Adasum: Horovod's adaptive summation of the ranks' gradients, computed exactly from every rank's copy.

For two gradients a and b of one tensor (Maleki et al., "Scaling Distributed Training
with Adaptive Summation", MLSys 2021):

    adasum(a, b) = (1 - a.b / (2 |a|^2)) a + (1 - a.b / (2 |b|^2)) b

Orthogonal gradients add up (a + b); equal ones are averaged (a); in between, the part
they share counts once. A zero gradient leaves the other as it is. More ranks combine
pairwise in a tree: level by level, neighbours (0,1), (2,3), ... are combined and the
results combined again; with an odd count the last one goes up a level unchanged, so
any number of ranks works (Horovod's CPU Adasum asks for a power of two). The dot
products and norms are per tensor (per parameter), as in Horovod, not over the whole
bucket.

How: every rank allgathers the bucket and computes the same tree in the same order, in
float64, so every rank gets the same bits. This moves size times the bytes of an
allreduce; Horovod's recursive halving computes the same formula with less traffic and
in a rank-dependent rounding order.
"""
from __future__ import annotations

from ..engine.backend import array_module


def combine_pair(a, b):
    """adasum(a, b) of two 1-D float64 arrays (the formula in the module docstring)."""
    xp = array_module(a)
    dot = float(xp.dot(a, b))
    a_squared = float(xp.dot(a, a))
    b_squared = float(xp.dot(b, b))
    a_weight = 1.0 - dot / (2.0 * a_squared) if a_squared > 0 else 1.0
    b_weight = 1.0 - dot / (2.0 * b_squared) if b_squared > 0 else 1.0
    return a_weight * a + b_weight * b


def combine_tree(rows):
    """The pairwise tree over a list of 1-D arrays, rank 0 first."""
    while len(rows) > 1:
        rows = [combine_pair(rows[i], rows[i + 1]) if i + 1 < len(rows) else rows[i] for i in range(0, len(rows), 2)]
    return rows[0]


def adasum(everyone, segments):
    """Every rank's bucket (rows of `everyone`, rank order) combined by Adasum per segment (offset, size)."""
    xp = array_module(everyone)
    result = xp.empty(everyone.shape[1], dtype=everyone.dtype)
    for offset, size in segments:
        rows = [everyone[r, offset:offset + size].astype(xp.float64) for r in range(everyone.shape[0])]
        result[offset:offset + size] = combine_tree(rows)
    return result


__all__ = ["adasum", "combine_pair", "combine_tree"]
