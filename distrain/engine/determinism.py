"""`use_deterministic_algorithms`: PyTorch's reproducibility switch, and what it means here.

PyTorch's switch makes ops choose reproducible kernels and raise (or, with warn_only,
warn) for ops that have none. distrain's answer depends on the device:

- cpu: every op is deterministic already (NumPy computes each sum in a fixed order), so
  the switch changes nothing; with the same seed a run repeats bit for bit.
- cuda: the backward of advanced indexing (`x[idx]`, embedding lookups) and
  scatter_add/index_add accumulate with CuPy's atomic adds, whose float sums can differ
  in the last bits from run to run. The switch is recorded but does not yet change those
  kernels.

The flag is process-wide, as in PyTorch; `set_deterministic_debug_mode` is the same
switch spelled 0/1/2 ("default"/"warn"/"error").
"""
from __future__ import annotations

from ..errors import ArgumentError

_enabled = False
_warn_only = False

_DEBUG_MODES = {"default": 0, "warn": 1, "error": 2}


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Ask for reproducible kernels (see the module's note for what that changes on each device)."""
    global _enabled, _warn_only
    if not isinstance(mode, bool):
        raise ArgumentError(f"use_deterministic_algorithms: mode must be True or False, got {mode!r}")
    _enabled, _warn_only = mode, bool(warn_only)


def are_deterministic_algorithms_enabled() -> bool:
    return _enabled


def is_deterministic_algorithms_warn_only_enabled() -> bool:
    return _warn_only


def set_deterministic_debug_mode(debug_mode) -> None:
    """0 or "default": off; 1 or "warn": on, warn only; 2 or "error": on."""
    level = _DEBUG_MODES.get(debug_mode, debug_mode) if isinstance(debug_mode, str) else debug_mode
    if level not in (0, 1, 2) or isinstance(level, bool):
        raise ArgumentError(f"set_deterministic_debug_mode: expected 0, 1, 2, 'default', 'warn' or 'error', "
                            f"got {debug_mode!r}")
    use_deterministic_algorithms(level > 0, warn_only=level == 1)


def get_deterministic_debug_mode() -> int:
    return 0 if not _enabled else 1 if _warn_only else 2
