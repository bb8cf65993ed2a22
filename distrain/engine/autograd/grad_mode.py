"""Whether ops record the graph: `no_grad`, `enable_grad`, `set_grad_enabled`.

The flag is per thread (as in PyTorch), so a loader thread evaluating under `no_grad`
does not switch recording off for the training thread. Every op reads it once; keeping
it a plain attribute of a `threading.local` makes that read cost about as much as a
global lookup.
"""
from __future__ import annotations

import functools
import threading


class _GradModeState(threading.local):
    enabled = True  # the class attribute is each new thread's starting value


state = _GradModeState()


def is_grad_enabled() -> bool:
    """True when new ops record the graph for backward."""
    return state.enabled


class _GradModeContext:
    """Shared machinery: a context manager that is also a function decorator.

    Works as `with no_grad():`, `@no_grad()` and, like PyTorch, bare `@no_grad`.
    """

    _target: bool

    def __new__(cls, *args):
        if cls is not set_grad_enabled and len(args) == 1 and callable(args[0]):
            return object.__new__(cls)(args[0])  # bare decorator: @no_grad
        return object.__new__(cls)

    def __enter__(self):
        self._previous = state.enabled
        state.enabled = self._target
        return None

    def __exit__(self, *exc_info):
        state.enabled = self._previous
        return False

    def __call__(self, fn):
        target = self._target

        @functools.wraps(fn)
        def run_in_mode(*args, **kwargs):
            previous = state.enabled
            state.enabled = target
            try:
                return fn(*args, **kwargs)
            finally:
                state.enabled = previous

        return run_in_mode


class no_grad(_GradModeContext):
    """Run without recording the graph (evaluation, manual parameter updates).

    Example::

        with distrain.no_grad():
            w -= lr * w.grad
    """

    _target = False


class enable_grad(_GradModeContext):
    """Record the graph even inside a `no_grad` block."""

    _target = True


class set_grad_enabled(_GradModeContext):
    """Switch recording on or off: at once when called, and back on exit when used with `with`.

    `set_grad_enabled(is_training)` is the usual way to share one loop between training
    and evaluation.
    """

    def __init__(self, mode: bool):
        self._target = bool(mode)
        self._previous = state.enabled
        state.enabled = self._target

    def __enter__(self):
        return None

    def __call__(self, fn):
        state.enabled = self._previous  # used as a decorator: undo the call-time switch
        return super().__call__(fn)
