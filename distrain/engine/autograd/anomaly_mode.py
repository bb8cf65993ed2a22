"""Anomaly mode: name the first backward op whose gradient is NaN (or inf), with the forward
code that created it.

A NaN in a loss's gradient usually starts in one op (a log of 0, a 0/0, a sqrt at 0) and
then spreads through everything before it in backward, so by the time `.grad` is looked at
the origin is lost. With anomaly mode on, every op records the Python stack of its forward
call, and the backward walk checks each op's gradients as they are produced: the first one
holding NaN raises, naming the op and showing where it was created::

    >>> import distrain
    >>> x = distrain.tensor([2.0, 3.0], requires_grad=True)
    >>> scale = distrain.tensor([float("nan"), 1.0])  # say, a statistic of an empty batch
    >>> with distrain.autograd.detect_anomaly():
    ...     y = x * scale
    ...     y.sum().backward()
    Traceback (most recent call last):
    ...
    distrain.errors.AutogradError: Function 'MulBackward0' returned nan values in its 0th output...

As in PyTorch: `detect_anomaly(check_nan=True)` is a context manager, `set_detect_anomaly(mode,
check_nan=True)` switches the mode at once (and restores it on exit when used with `with`),
`is_anomaly_enabled()` / `is_anomaly_check_nan_enabled()` report it, the mode is global (all
threads), and the message for NaN is PyTorch's. Beyond PyTorch, `check_inf=True` (off by
default, as PyTorch has no such check: sqrt at 0 and fp16 loss scaling make infinite
gradients on purpose) reports an infinite gradient too ("returned inf values"), after NaN:
an overflow is where a NaN usually begins.
An exception raised inside a backward formula gets the forward stack added as a note.

It costs nothing when off: recording the stack (tens of microseconds per op) and checking
each gradient (a pass over it, and a device sync on a GPU) happen only in anomaly mode.
"""
from __future__ import annotations

import os
import traceback

from ...errors import AutogradError
from ..backend import array_module


class _State:
    enabled = False
    check_nan = True
    check_inf = False


state = _State()
_ENGINE_DIRECTORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_anomaly_enabled() -> bool:
    return state.enabled


def is_anomaly_check_nan_enabled() -> bool:
    return state.check_nan


class set_detect_anomaly:
    """Turn anomaly mode on or off now; as a context manager, restore the previous mode on exit."""

    def __init__(self, mode: bool, check_nan: bool = True, check_inf: bool = False):
        self.previous = (state.enabled, state.check_nan, state.check_inf)
        state.enabled, state.check_nan, state.check_inf = bool(mode), bool(check_nan), bool(check_inf)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        state.enabled, state.check_nan, state.check_inf = self.previous
        return False


class detect_anomaly:
    """Context manager: anomaly mode on inside the block (see the module docstring)."""

    def __init__(self, check_nan: bool = True, check_inf: bool = False):
        self.check_nan = bool(check_nan)
        self.check_inf = bool(check_inf)
        self.previous = None

    def __enter__(self):
        self.previous = (state.enabled, state.check_nan, state.check_inf)
        state.enabled, state.check_nan, state.check_inf = True, self.check_nan, self.check_inf
        return self

    def __exit__(self, *exc_info):
        state.enabled, state.check_nan, state.check_inf = self.previous
        return False


def forward_stack():
    """The caller's stack at an op's forward, without distrain's own engine frames at its end."""
    frames = traceback.extract_stack()
    while frames and frames[-1].filename.startswith(_ENGINE_DIRECTORY):
        frames.pop()
    return frames


def run_backward_checked(node, grads_in):
    """`node.backward_fn(node, grads_in)`, with the anomaly checks around it (the engine calls
    this instead when anomaly mode is on)."""
    try:
        grads = node.backward_fn(node, grads_in)
    except Exception as exc:
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(f"Error detected in {backward_name(node)}. {_describe_forward(node)}")
        raise
    checks = (("nan", "isnan"),) * state.check_nan + (("inf", "isinf"),) * state.check_inf
    for what, test in checks:
        for index, grad in enumerate(grads):
            if grad is not None and getattr(array_module(grad._data), test)(grad._data).any():
                raise AutogradError(f"Function '{backward_name(node)}' returned {what} values in its {index}th "
                                    f"output. {_describe_forward(node)}")
    return grads


def backward_name(node) -> str:
    """PyTorch's name for a node's backward: 'DivBackward0', or 'MyFunctionBackward' for a Function."""
    return node.name()


def _describe_forward(node) -> str:
    stack = getattr(node, "forward_stack", None)
    if stack is None:
        return ("(Its forward ran before anomaly mode was on: run the forward inside detect_anomaly() too to see "
                "where it was created.)")
    return "Traceback of the forward call that created it:\n" + "".join(traceback.format_list(stack)).rstrip()
