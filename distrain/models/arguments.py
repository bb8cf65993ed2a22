"""Checks of the values models take, each raising ModelError that names the model and the argument.

Model arguments often come from a config file, so a wrong value should be refused where it
is read, in one line a user can act on ("model 'cnn': num_classes must be an integer >= 1,
got 0"), not surface later as a shape error in the first forward.
"""
from __future__ import annotations

import numbers

from ..errors import ModelError


def integer(model, argument, value, minimum=1):
    """`value` as an int >= minimum (bools are refused: True is not a width)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ModelError(f"model {model!r}: {argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def integers(model, argument, value, allow_empty=False):
    """`value` (a list or tuple) as a tuple of ints >= 1, e.g. hidden widths or an input shape."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or (not value and not allow_empty):
        kind = "a list of integers >= 1" if allow_empty else "a non-empty list of integers >= 1"
        raise ModelError(f"model {model!r}: {argument} must be {kind}, got {value!r}")
    return tuple(integer(model, f"{argument}[{index}]", item) for index, item in enumerate(value))


def probability(model, argument, value):
    """`value` as a float in [0, 1) (a dropout rate of 1 would zero every activation)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ModelError(f"model {model!r}: {argument} must be a number in [0, 1), got {value!r}")
    return float(value)


def choice(model, argument, value, choices):
    """`value`, which must be one of `choices`."""
    if value not in choices:
        raise ModelError(f"model {model!r}: {argument} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def flag(model, argument, value):
    """`value`, which must be a bool (a config's "false" string is not False)."""
    if not isinstance(value, bool):
        raise ModelError(f"model {model!r}: {argument} must be true or false, got {value!r}")
    return value


def image_shape(model, input_shape):
    """An image `input_shape` (channels, height, width) as a tuple of ints, or None when not given.

    Models accept `input_shape` so that a trainer can describe its dataset the same way to
    every model; `in_channels` and `input_size` are the usual spellings of its parts.
    """
    if input_shape is None:
        return None
    shape = integers(model, "input_shape", input_shape)
    if len(shape) != 3:
        raise ModelError(f"model {model!r}: input_shape must be (channels, height, width), got {input_shape!r}")
    return shape


def given_or_derived(model, argument, value, derived, default):
    """An integer argument: `value` if given, else `derived` (from input_shape) if known, else `default`.

    When both `value` and `derived` are known they must agree: two descriptions of the same
    input that differ are a mistake in the config, not something to pick a winner for.
    """
    if value is not None and derived is not None and value != derived:
        raise ModelError(f"model {model!r}: {argument}={value!r} disagrees with input_shape, which gives {derived}; "
                         "give one of them")
    return integer(model, argument, next(v for v in (value, derived, default) if v is not None))
