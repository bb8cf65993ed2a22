"""Which static-graph capture (distrain.jit) is running on this thread, if any.

Kept apart from distrain/engine/jit so that low-level modules (random.py) can ask without
importing the capture machinery: a random draw made while a capture runs must be recorded
as a draw (so every replay draws anew), not frozen as the capture's numbers.
"""
from __future__ import annotations

import threading

_local = threading.local()


def active():
    """The recorder capturing on this thread, or None."""
    return getattr(_local, "recorder", None)


def set_active(recorder):
    _local.recorder = recorder
