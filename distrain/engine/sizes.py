"""Sizes that come from the user, checked before anything is allocated.

NumPy meets a bad size with errors that name neither the op nor the shape ("negative
dimensions are not allowed", "array is too big", a MemoryError after trying): factories and
shape ops pass their sizes through `checked_shape` first, and allocate inside `allocating`,
so a typo such as `zeros(10**12)` says which op, which shape and how many bytes.
"""
from __future__ import annotations

import contextlib
import functools
import math
import operator
import os

import numpy

from ..errors import DTypeError, OutOfMemoryError, ShapeError

_MAX_BYTES = numpy.iinfo(numpy.intp).max  # the most one array can span


def checked_shape(op_name, size, dtype=None) -> tuple:
    """`size` (ints, or one tuple/list of them) as a tuple of non-negative ints whose array of
    `dtype` is addressable; DTypeError for non-integers, ShapeError otherwise."""
    shape = integers(op_name, size)
    if any(extent < 0 for extent in shape):
        raise ShapeError(f"{op_name}: negative dimension in size {shape}; sizes are >= 0")
    itemsize = 1 if dtype is None else numpy.dtype(dtype).itemsize
    # NumPy needs the product of the non-zero extents to be addressable even when another one is 0
    if math.prod(max(extent, 1) for extent in shape) * itemsize > _MAX_BYTES:
        raise ShapeError(f"{op_name}: size {shape} holds {math.prod(shape)} elements, {_bytes(math.prod(shape) * itemsize)}"
                         f"{'' if dtype is None else f' of {numpy.dtype(dtype)}'}: more than any array can address")
    return shape


def integers(op_name, values, what="a size") -> tuple:
    """`values` (ints, or one tuple/list of them, as PyTorch accepts both f(2, 3) and f((2, 3)))
    as a tuple of Python ints; DTypeError naming the op for a float, a str, ..."""
    if len(values) == 1 and isinstance(values[0], (tuple, list)):
        values = values[0]
    try:
        return tuple(operator.index(value) for value in values)
    except TypeError:
        bad = next(value for value in values if not _is_index(value))
        raise DTypeError(f"{op_name}: {what} must be integers, got {bad!r:.40} ({type(bad).__name__}) in "
                         f"{tuple(values)!r:.80}") from None


@contextlib.contextmanager
def allocating(op_name, shape, dtype, on_gpu=False):
    """Allocate a `shape` array of `dtype` inside this block: refused up front when it is larger
    than the machine's whole memory, and a failed allocation becomes an OutOfMemoryError naming
    the op, the shape and the size.

    The up-front check matters on the CPU: Linux overcommits, so NumPy may be handed 4 TiB of
    address space and the process is killed by the OOM killer when the values are written,
    with no Python error at all. A GPU refuses at once (CuPy's OutOfMemoryError is a MemoryError).
    """
    size = math.prod(shape) * numpy.dtype(dtype).itemsize
    memory = None if on_gpu else physical_memory()
    if memory is not None and size > memory:
        raise _out_of_memory(op_name, shape, dtype, size, f"this machine has {_bytes(memory)} of memory")
    try:
        yield
    except MemoryError:
        raise _out_of_memory(op_name, shape, dtype, size, "not enough memory") from None


@functools.lru_cache(maxsize=1)
def physical_memory():
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _out_of_memory(op_name, shape, dtype, size, reason):
    return OutOfMemoryError(f"{op_name}: cannot allocate a tensor of shape {tuple(shape)} and dtype "
                            f"{numpy.dtype(dtype)} ({_bytes(size)}): {reason}")


def _is_index(value) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _bytes(count) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.4g} {unit}" if unit != "bytes" else f"{count} bytes"
        count /= 1024
