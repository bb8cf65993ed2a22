"""How kernels see arrays: in their memory order, as C-contiguous views, without copying when possible.

distrain's convolution hands on NCHW tensors whose memory is laid out (C, N, H, W)
(NOTE [ Convolution layout ] in ops/conv.py), and a gradient arriving from a reshape is
plain NCHW. A compiled loop is fastest, and compiles once, on C-contiguous arrays; so a
kernel permutes its arrays into one memory order (the first array's), takes
C-contiguous views (copying only an array laid out otherwise), and permutes its results
back, so they keep the first array's memory order.
"""
from __future__ import annotations

from ..backend import array_module


def memory_order(array):
    """The axes of `array` from the largest stride to the smallest (a stable sort: equal strides keep their order)."""
    strides = array.strides
    return tuple(sorted(range(array.ndim), key=lambda axis: -abs(strides[axis])))


def in_order(array, order):
    """`array` permuted to `order`, C-contiguous (a view when its memory already is, else one copy)."""
    permuted = array.transpose(order)
    if permuted.flags.c_contiguous:
        return permuted
    return array_module(array).ascontiguousarray(permuted)


def back_from(array, order):
    """Undo `in_order`'s permutation: the array again indexed as the caller's axes."""
    inverse = [0] * len(order)
    for position, axis in enumerate(order):
        inverse[axis] = position
    return array.transpose(inverse)


__all__ = ["back_from", "in_order", "memory_order"]
