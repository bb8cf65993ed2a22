"""`inference_mode`: PyTorch's faster `no_grad` for code whose results never meet autograd.

PyTorch's inference mode switches recording off (as no_grad does) and also marks the
tensors it creates as "inference tensors" that autograd later refuses, which lets it skip
version counting. distrain has no per-tensor bookkeeping to skip (a no_grad op already
records nothing), so here inference mode is no_grad plus PyTorch's observable rules that
cost nothing:

- `inference_mode()` / `inference_mode(True)` switches grad mode off and
  `is_inference_mode_enabled()` on; `inference_mode(False)` switches grad mode ON (as
  PyTorch does, even inside no_grad) and inference mode off;
- it is a context manager and a decorator, bare (`@inference_mode`) or called
  (`@inference_mode()`, `@inference_mode(mode=False)`); per thread, like grad mode.

Not reproduced: tensors made inside are ordinary tensors (`enable_grad()` inside the
block records, where PyTorch's inference tensors would not).

Example::

    >>> with distrain.inference_mode():
    ...     logits = model(batch)
"""
from __future__ import annotations

import functools
import threading

from . import grad_mode


class _InferenceModeState(threading.local):
    enabled = False  # each new thread starts outside inference mode


state = _InferenceModeState()


def is_inference_mode_enabled() -> bool:
    """True inside `inference_mode()` (in this thread)."""
    return state.enabled


class inference_mode:
    """Run without recording the graph, as PyTorch's inference mode (see the module's note)."""

    def __new__(cls, mode=True):
        if callable(mode):  # bare decorator: @inference_mode
            return cls(True)(mode)
        return object.__new__(cls)

    def __init__(self, mode=True):
        self.mode = bool(mode)
        self._previous = []  # a stack, so one instance can be entered again while inside itself

    def __enter__(self):
        self._previous.append((grad_mode.state.enabled, state.enabled))
        grad_mode.state.enabled = not self.mode
        state.enabled = self.mode
        return None

    def __exit__(self, *exc_info):
        grad_mode.state.enabled, state.enabled = self._previous.pop()
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def run_in_inference_mode(*args, **kwargs):
            with inference_mode(mode):
                return fn(*args, **kwargs)

        return run_in_inference_mode

    def clone(self):
        return inference_mode(self.mode)
