"""Which static-graph capture (distrain.jit) is running on this thread, if any.

Kept apart from distrain/engine/jit so that low-level modules (random.py) can ask without
importing the capture machinery: a random draw made while a capture runs must be recorded
as a draw (so every replay draws anew), not frozen as the capture's numbers.
"""
from __future__ import annotations

import threading


class _CaptureState(threading.local):
    # A class-level default, not getattr(..., None): kernels and factories ask on every call, and a
    # getattr that misses costs 0.8 us (it raises and catches AttributeError), a plain read 0.1 us.
    recorder = None  # each thread starts with no capture


_local = _CaptureState()


def active():
    """The recorder capturing on this thread, or None."""
    return _local.recorder


def set_active(recorder):
    _local.recorder = recorder
