"""einsum: Einstein summation, computed as a chain of batched matrix products.

NumPy's own einsum loops in C without BLAS unless the contraction happens to be a plain
tensordot, which a batched one ('bij,bjk->bik', attention's 'bhqd,bhkd->bhqk') is not.
So the forward does what PyTorch does: contract the operands pairwise (in NumPy's greedy
`einsum_path` order when there are more than two), each pair as one `matmul` over
(batch, kept-left, contracted) x (batch, contracted, kept-right), and letters that only one
operand carries are summed away first. The backward of operand k is itself an einsum of the
output's gradient with the other operands, so it runs on the same fast path and is
differentiable again (create_graph).
"""
from __future__ import annotations

import functools
import string

import numpy

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from .core import Tensor, check_same_dtype, grad_state, record, wrap

_LETTERS = string.ascii_letters


def einsum(equation, *operands):
    """Sum of products of the operands' elements, indexed as `equation` says (PyTorch's einsum).

    Example::

        >>> scores = distrain.einsum("bhqd,bhkd->bhqk", q, k)   # attention scores
        >>> trace = distrain.einsum("ii", a)
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands or not all(isinstance(x, Tensor) for x in operands):
        raise ArgumentError(f"einsum: expected one or more tensors after the equation, got "
                            f"{[type(x).__name__ for x in operands]}")
    inputs, output = _parse(equation.replace(" ", ""), tuple(x.ndim for x in operands))
    operands = _broadcast_ellipsis(equation, inputs, operands)
    check_same_dtype("einsum", tuple(f"operand {i}" for i in range(len(operands))), operands)
    result = wrap(_contract([x._data for x in operands], inputs, output))
    if grad_state.enabled and any(x._requires_grad for x in operands):
        record("Einsum", _einsum_backward, operands, (result,), saved=operands, args=(inputs, output))
    return result


@functools.lru_cache(maxsize=256)
def _parse(equation, ndims):
    """(subscripts per operand, output subscripts), '...' spelled out in letters the equation does not use."""
    if equation.count("->") > 1:
        raise ArgumentError(f"einsum: equation {equation!r} has more than one '->'")
    left, arrow, right = equation.partition("->")
    terms = left.split(",")
    if len(terms) != len(ndims):
        raise ArgumentError(f"einsum: equation {equation!r} names {len(terms)} operand(s) but {len(ndims)} were given")
    for term in terms + [right]:
        if any(c not in _LETTERS for c in term.replace("...", "")):
            raise ArgumentError(f"einsum: equation {equation!r} may hold only letters, ',', '->' and '...'")
    spare = [c for c in _LETTERS if c not in equation]
    ranks = []  # how many dimensions each operand's '...' stands for
    for i, (term, ndim) in enumerate(zip(terms, ndims)):
        named = len(term.replace("...", ""))
        if ("..." in term and ndim < named) or ("..." not in term and ndim != named):
            raise ShapeError(f"einsum: subscripts {term!r} name {named} dimension(s) but operand {i} has {ndim}")
        ranks.append(ndim - named if "..." in term else 0)
    ellipsis_rank = max(ranks)
    broadcast = "".join(spare[:ellipsis_rank])  # right-aligned, as broadcasting aligns dimensions
    inputs = [term.replace("...", broadcast[ellipsis_rank - rank:]) for term, rank in zip(terms, ranks)]
    if arrow:
        output = right.replace("...", broadcast)  # without '...' in the output, those dimensions are summed
    else:
        counts = "".join(inputs)
        output = broadcast + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in broadcast))
    for c in output:
        if output.count(c) > 1 or not any(c in t for t in inputs):
            raise ArgumentError(f"einsum: output subscript {c!r} of {equation!r} appears twice or in no operand")
    return tuple(inputs), output


def _broadcast_ellipsis(equation, inputs, operands):
    """Operands expanded where a letter's extent is 1 in one and n in another (PyTorch broadcasts them)."""
    extents = {}
    for i, (term, x) in enumerate(zip(inputs, operands)):
        for c, n in zip(term, x.shape):
            if extents.get(c, 1) != n and n != 1 and extents.get(c, 1) != 1:
                raise ShapeError(f"einsum: subscript {c!r} of {equation!r} has size {extents[c]} in one operand and "
                                 f"{n} in operand {i} (shapes {[tuple(o.shape) for o in operands]})")
            if n != 1 or c not in extents:
                extents[c] = n
    return tuple(x if all(extents[c] == n for c, n in zip(term, x.shape)) else x.expand(tuple(extents[c] for c in term))
                 for term, x in zip(inputs, operands))


def _contract(arrays, inputs, output):
    xp = array_module(arrays[0])
    terms = list(inputs)
    arrays = list(arrays)
    for i in range(len(arrays)):  # diagonals and letters no other operand (nor the output) needs
        others = output + "".join(t for j, t in enumerate(terms) if j != i)
        arrays[i], terms[i] = _reduce_alone(xp, arrays[i], terms[i], others)
    for first, second in _pair_order(tuple(terms), output, tuple(tuple(a.shape) for a in arrays)):
        b, b_term = arrays.pop(second), terms.pop(second)
        a, a_term = arrays.pop(first), terms.pop(first)
        needed = output + "".join(terms)
        a, a_term = _reduce_alone(xp, a, a_term, needed + b_term)
        b, b_term = _reduce_alone(xp, b, b_term, needed + a_term)
        product, product_term = _matmul_pair(xp, a, a_term, b, b_term, needed)
        arrays.append(product)
        terms.append(product_term)
    (result,), (term,) = arrays, terms
    result, term = _reduce_alone(xp, result, term, output)
    result = result.transpose([term.index(c) for c in output])
    return result if result.flags.c_contiguous else xp.ascontiguousarray(result)


def _reduce_alone(xp, array, term, needed):
    """Take repeated letters' diagonal and sum letters not in `needed`, with one single-operand einsum."""
    kept = "".join(c for i, c in enumerate(term) if c in needed and term.index(c) == i)
    if kept == term:
        return array, term
    return xp.einsum(f"{term}->{kept}", array), kept


@functools.lru_cache(maxsize=256)
def _pair_order(terms, output, shapes):
    """Pairs (positions in the shrinking operand list) to contract, NumPy's greedy order past two operands."""
    if len(terms) <= 2:
        return ((0, 1),) if len(terms) == 2 else ()
    stand_ins = [numpy.broadcast_to(numpy.empty((), dtype=numpy.float32), shape) for shape in shapes]
    path, _ = numpy.einsum_path(",".join(terms) + "->" + output, *stand_ins, optimize="greedy")
    return tuple(tuple(sorted(step)) for step in path[1:])


def _matmul_pair(xp, a, a_term, b, b_term, needed):
    """a (letters a_term) times b, summing the shared letters not in `needed`, as one batched matmul."""
    batch = "".join(c for c in a_term if c in b_term and c in needed)
    summed = "".join(c for c in a_term if c in b_term and c not in needed)
    left = "".join(c for c in a_term if c not in b_term)
    right = "".join(c for c in b_term if c not in a_term)
    size = dict(zip(a_term, a.shape)) | dict(zip(b_term, b.shape))

    def arranged(array, term, order, rows, columns):
        moved = array.transpose([term.index(c) for c in order])
        return moved.reshape(_count(size, batch), _count(size, rows), _count(size, columns))

    product = xp.matmul(arranged(a, a_term, batch + left + summed, left, summed),
                        arranged(b, b_term, batch + summed + right, summed, right))
    return product.reshape(tuple(size[c] for c in batch + left + right)), batch + left + right


def _count(size, letters):
    count = 1
    for c in letters:
        count *= size[c]
    return count


def _einsum_backward(node, grad):
    """d out / d operand k: the einsum of grad with the other operands, back to operand k's subscripts.

    Letters only operand k carries were summed in forward, so the gradient is broadcast
    along them; a letter repeated in operand k (a diagonal) receives the gradient on
    that diagonal and zero elsewhere.
    """
    operands = node.saved_tensors
    inputs, output = node.args
    grads = []
    for k, (term, edge) in enumerate(zip(inputs, node.next_edges)):
        if edge is None:
            grads.append(None)
            continue
        others = [t for j, t in enumerate(inputs) if j != k]
        available = output + "".join(others)
        distinct = "".join(c for i, c in enumerate(term) if term.index(c) == i)
        reached = "".join(c for c in distinct if c in available)
        equation = ",".join([output] + others) + "->" + reached
        partial = einsum(equation, grad, *[x for j, x in enumerate(operands) if j != k])
        size = dict(zip(term, operands[k].shape))
        if reached != distinct:
            partial = partial.reshape(tuple(size[c] if c in reached else 1 for c in distinct))
            partial = partial.expand(tuple(size[c] for c in distinct))
        if distinct != term:
            partial = _onto_diagonal(partial, distinct, term, size)
        grads.append(partial)
    return tuple(grads)


def _onto_diagonal(values, distinct, term, size):
    """A zero tensor of `term`'s shape with `values` (laid out by `distinct`) on its repeated-letter diagonal."""
    from .indexing import index_into_zeros

    xp = array_module(values._data)
    grids = {c: xp.arange(size[c]).reshape([size[c] if d == c else 1 for d in distinct]) for c in distinct}
    return index_into_zeros(values, tuple(size[c] for c in term), tuple(grids[c] for c in term), False)


__all__ = ["Tensor", "einsum"]
