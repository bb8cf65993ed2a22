"""The errors of static capture: what could not be captured, and why a replay was refused."""
from __future__ import annotations

from ...errors import DistrainError


class CaptureError(DistrainError, RuntimeError):
    """The function cannot become a static graph as written: the message says what, where and what to do.

    Raised during capture for data-dependent Python (a tensor's value in an `if`, `.item()`,
    `.numpy()`, printing a tensor, a shape that depends on values), for Python-side changes a
    replay would not repeat, and when the verifying replay disagrees with the eager run.
    """


class GuardError(DistrainError, RuntimeError):
    """A replay was refused: the inputs or the model differ from what the graph was captured for,
    and retracing is switched off or its cache is full. The message lists every difference."""


class SerializationError(DistrainError, ValueError):
    """A saved graph that cannot be written or read: an op without a portable name, a damaged or
    foreign file, a version this distrain does not know."""
