"""Horovod's reduction ops (hvd.Average, hvd.Sum, hvd.Adasum, hvd.Min, hvd.Max, hvd.Product)."""
from __future__ import annotations

import enum

from ..errors import DistrainError


class HorovodError(DistrainError, ValueError):
    """A Horovod call distrain refuses: bad input, an unsupported option, or a call before hvd.init()."""


class ReduceOp(enum.IntEnum):
    """How hvd.allreduce combines the ranks' tensors (Horovod's values)."""

    Average = 0
    Sum = 1
    Adasum = 2
    Min = 3
    Max = 4
    Product = 5


Average, Sum, Adasum, Min, Max, Product = (ReduceOp.Average, ReduceOp.Sum, ReduceOp.Adasum, ReduceOp.Min,
                                           ReduceOp.Max, ReduceOp.Product)


def resolve_op(op, average, what):
    """The ReduceOp of an hvd call: op, else the deprecated average= flag, else Average (Horovod's default)."""
    if op is not None and average is not None:
        raise HorovodError(f"hvd.{what}: give op= or the deprecated average=, not both")
    if op is None:
        return Sum if average is False else Average
    try:
        return ReduceOp(op)
    except ValueError:
        raise HorovodError(f"hvd.{what}: op={op!r} is not one of hvd.Average, hvd.Sum, hvd.Adasum, hvd.Min, "
                           "hvd.Max, hvd.Product") from None


__all__ = ["Adasum", "Average", "HorovodError", "Max", "Min", "Product", "ReduceOp", "Sum", "resolve_op"]
