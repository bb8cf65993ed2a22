"""Checks on the values of an op's inputs (class indices in range, probabilities in [0, 1]).

Eagerly, a check reads the minimum and maximum and raises at once. While distrain.jit
captures a static graph, reading values in Python is exactly what capture refuses (the
graph would keep this call's answer), so the check is recorded into the graph instead
and runs again on every replay's values: a bad target raises the same error whether the
step is eager or replayed. The error is given as its class and a message template (with
`{lowest}` and `{highest}`), not a closure, so that a saved graph can carry it.
"""
from __future__ import annotations

from ..capture_state import active as _capturing


def require_range(values, low, high, error, message, *, high_inclusive=False, shown=None):
    """Raise `error(message.format(lowest=..., highest=...))` unless low <= values <= / < high (see above).

    `shown`: the array whose range the message reports (default: `values`). Either bound may be None.
    """
    recorder = _capturing()
    if recorder is not None and (hasattr(values, "concrete") or hasattr(shown, "concrete")):
        recorder.check(check_range, (values, low, high, error, message, high_inclusive, shown))
        return
    check_range(values, low, high, error, message, high_inclusive, shown)


def check_range(values, low, high, error, message, high_inclusive, shown):
    """The check itself, on concrete arrays (what a replay calls)."""
    if not values.size:
        return
    lowest, highest = values.min(), values.max()
    too_high = high is not None and (highest > high if high_inclusive else highest >= high)
    if (low is not None and lowest < low) or too_high:
        shown = values if shown is None else shown
        raise error(message.format(lowest=_plain(shown.min()), highest=_plain(shown.max())))


def _plain(value):
    return value.item()
