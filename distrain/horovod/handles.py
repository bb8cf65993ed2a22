"""The integer handles of hvd's `_async` calls: `poll(handle)` and `synchronize(handle)`.

A handle stands for a communicator Handle in flight (distrain.comm.base) and a function
that makes the call's output once it has completed. Allreduces with Average, Sum, Min or
Max use the communicator's non-blocking allreduce and are in flight until synchronize();
the other calls (allgather, broadcast, alltoall, Product and Adasum reductions) have
completed by the time their `_async` form returns (the communicators' broadcast and
allgather block), and their handles only hold the output.
"""
from __future__ import annotations

import itertools

from .ops import HorovodError

_pending = {}  # handle -> (communicator Handle, function returning the output)
_numbers = itertools.count(1)


def remember(handle, output) -> int:
    """A new integer handle for `handle`; synchronize() returns output() after handle.wait()."""
    number = next(_numbers)
    _pending[number] = (handle, output)
    return number


def poll(handle) -> bool:
    """True once the operation behind `handle` has completed (synchronize() will not block)."""
    return _entry(handle, "poll")[0].is_completed()


def synchronize(handle):
    """Wait for the operation behind `handle` and return its output (a Tensor, or a tuple of them)."""
    waited, output = _entry(handle, "synchronize")
    try:
        waited.wait()
        return output()
    finally:
        del _pending[handle]


def _entry(handle, what):
    try:
        return _pending[handle]
    except (KeyError, TypeError):
        raise HorovodError(f"hvd.{what}({handle!r}): not a handle of an operation in flight (was it synchronized "
                           "already, or made before the last hvd.init()/shutdown()?)") from None


def forget_all():
    _pending.clear()


__all__ = ["forget_all", "poll", "remember", "synchronize"]
