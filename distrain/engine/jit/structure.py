"""Inputs and outputs as nested structures: flattened to arrays, and a spec that guards the rest.

A function may take tensors in tuples, lists and dicts, and Python values beside them
(tinygrad's JIT silently dropped list inputs). Every tensor or array anywhere in the
arguments is an input of the graph; everything else (ints, floats, strings, None) is
part of the spec, compared on every replay, so a changed flag or size is noticed rather
than replayed with the captured one.
"""
from __future__ import annotations

import numpy

from ..tensor import Tensor
from .errors import CaptureError


def flatten(value, leaves, path="inputs"):
    """Append every Tensor/array in `value` to `leaves`; return the spec of the rest."""
    kind = type(value)
    if isinstance(value, Tensor):
        leaves.append(value)
        return ("tensor",)
    if isinstance(value, numpy.ndarray):
        leaves.append(value)
        return ("array",)
    if kind is tuple or kind is list:
        return (kind.__name__, tuple(flatten(item, leaves, f"{path}[{index}]") for index, item in enumerate(value)))
    if kind is dict:
        return ("dict", tuple(value), tuple(flatten(item, leaves, f"{path}[{key!r}]") for key, item in value.items()))
    if value is None or kind in (bool, int, float, str, complex, bytes) or isinstance(value, (numpy.generic,)):
        return ("value", kind.__name__, value)
    if hasattr(value, "_fields") and kind is not tuple:  # a namedtuple
        return ("namedtuple", kind, tuple(flatten(item, leaves, f"{path}.{name}")
                                         for name, item in zip(value._fields, value)))
    raise CaptureError(f"distrain.jit: {path} is a {kind.__name__}, which a static graph cannot take as an input; "
                       "pass tensors, arrays, numbers, strings, None, and tuples/lists/dicts of them")


def unflatten(spec, leaves):
    """The structure `spec` describes, with its tensors taken in order from the iterator `leaves`."""
    kind = spec[0]
    if kind == "tensor" or kind == "array":
        return next(leaves)
    if kind == "value":
        return spec[2]
    if kind == "tuple":
        return tuple(unflatten(item, leaves) for item in spec[1])
    if kind == "list":
        return [unflatten(item, leaves) for item in spec[1]]
    if kind == "dict":
        return {key: unflatten(item, leaves) for key, item in zip(spec[1], spec[2])}
    if kind == "namedtuple":
        return spec[1](*(unflatten(item, leaves) for item in spec[2]))
    raise AssertionError(kind)


def describe_difference(captured, given, path="inputs"):
    """The first place where two specs differ, in words (for the guard's error), or None."""
    if captured == given:
        return None
    if captured[0] != given[0]:
        return f"{path} was a {_kind_name(captured)} when captured and is a {_kind_name(given)} now"
    kind = captured[0]
    if kind == "value":
        return f"{path} was {captured[2]!r} when captured and is {given[2]!r} now (Python values are part of the graph)"
    if kind == "dict" and captured[1] != given[1]:
        return f"{path} had keys {list(captured[1])} when captured and has {list(given[1])} now"
    children_captured, children_given = (captured[2], given[2]) if kind in ("dict", "namedtuple") else \
        (captured[1], given[1])
    if len(children_captured) != len(children_given):
        return f"{path} had {len(children_captured)} items when captured and has {len(children_given)} now"
    keys = captured[1] if kind == "dict" else range(len(children_captured))
    for key, a, b in zip(keys, children_captured, children_given):
        found = describe_difference(a, b, f"{path}[{key!r}]")
        if found:
            return found
    return None


def _kind_name(spec):
    return {"tensor": "tensor", "array": "NumPy array", "value": f"{spec[1]}" if spec[0] == "value" else ""}.get(
        spec[0], spec[0])
