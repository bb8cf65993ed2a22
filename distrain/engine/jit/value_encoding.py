"""Argument values as plain data for the checkpoint writer, and back, every field checked.

A saved graph's arguments are Python structures of slot references and plain values
(graph.py). The checkpoint format (distrain/checkpoint) stores None, bool, int, float,
str, bytes, lists, tuples, str/int-keyed dicts, NumPy scalars and arrays; everything else
becomes a list whose first item is a tag (`encode_value`). A file may be forged and the
replay's source is generated from what it holds, so `decode_value` accepts exactly what
`encode_value` writes, names only through the allow-list (portable_names.py), and nothing
deeper than MAX_DEPTH.
"""
from __future__ import annotations

import re

import numpy

from .checked_calls import original
from .errors import SerializationError
from .graph import Ref
from .portable_names import portable_name, resolve

_DTYPE = re.compile(r"[<>|=][biufc][0-9]{1,2}")
MAX_DEPTH = 40  # arguments nest a few levels (a tuple of slices in an index); the checkpoint allows 100


def encode_value(value, where):
    """`value` as checkpoint data: plain values as themselves, the rest as ["tag", ...] lists.

    Tags: ref (a slot), list, dict (key/value pairs), slice, ellipsis, dtype (its string),
    complex, name (an allowed callable or class). Tuples are tuples; every list is a tag.
    """
    kind = type(value)
    if kind is Ref:
        return ["ref", value.slot]
    if value is None or kind in (bool, int, float, str, bytes):
        return value
    if kind is tuple:
        return tuple(encode_value(item, where) for item in value)
    if kind is list:
        return ["list", [encode_value(item, where) for item in value]]
    if kind is dict:
        return ["dict", [[encode_value(key, where), encode_value(item, where)] for key, item in value.items()]]
    if kind is slice:
        return ["slice", *(encode_value(item, where) for item in (value.start, value.stop, value.step))]
    if value is Ellipsis:
        return ["ellipsis"]
    if kind is complex:
        return ["complex", value.real, value.imag]
    if isinstance(value, numpy.dtype):
        if not _DTYPE.fullmatch(value.str):
            raise SerializationError(f"distrain.jit: cannot save {where}: it uses dtype {value}; saved graphs hold "
                                     "bool, integer, floating-point and complex dtypes")
        return ["dtype", value.str]
    if isinstance(value, numpy.generic) and value.dtype.kind in "biufc":
        return value
    if callable(value):
        return ["name", portable_name(original(value), where)]
    raise SerializationError(f"distrain.jit: cannot save {where}: it passes a {kind.__name__} ({value!r:.60}), "
                             "which a saved graph cannot hold; pass numbers, strings, dtypes or tensors instead")


def decode_value(node, slots, where, depth=0):
    """The value `node` encodes (see `encode_value`), with every field checked; `slots`: the number of values."""
    if depth > MAX_DEPTH:
        raise malformed(where, f"its arguments nest more than {MAX_DEPTH} deep")
    kind = type(node)
    if node is None or kind in (bool, int, float, str, bytes):
        return node
    if isinstance(node, numpy.generic):
        return node
    if kind is tuple:
        return tuple(decode_value(item, slots, where, depth + 1) for item in node)
    if kind is not list or not node or type(node[0]) is not str:
        raise malformed(where, f"it holds a {kind.__name__} where an argument belongs")
    tag, payload = node[0], node[1:]
    if tag == "ref" and len(payload) == 1:
        return Ref(checked_slot(payload[0], slots, where))
    if tag == "list" and len(payload) == 1 and type(payload[0]) is list:
        return [decode_value(item, slots, where, depth + 1) for item in payload[0]]
    if tag == "dict" and len(payload) == 1 and type(payload[0]) is list:
        pairs = [_pair(item, where) for item in payload[0]]
        return {decode_value(key, slots, where, depth + 1): decode_value(item, slots, where, depth + 1)
                for key, item in pairs}
    if tag == "slice" and len(payload) == 3:
        return slice(*(decode_value(item, slots, where, depth + 1) for item in payload))
    if tag == "ellipsis" and not payload:
        return Ellipsis
    if tag == "complex" and len(payload) == 2 and all(type(item) is float for item in payload):
        return complex(*payload)
    if tag == "dtype" and len(payload) == 1 and type(payload[0]) is str and _DTYPE.fullmatch(payload[0]):
        return numpy.dtype(payload[0])
    if tag == "name" and len(payload) == 1:
        return resolve(payload[0], "value")
    raise malformed(where, f"it holds an argument tagged {tag!r:.40} with {len(payload)} fields")


def _pair(item, where):
    if type(item) is not list or len(item) != 2:
        raise malformed(where, "a dict argument is not a list of key/value pairs")
    return item


def checked_slot(slot, slots, where):
    """`slot` when it is a slot number of a graph with `slots` values."""
    if type(slot) is not int or not 0 <= slot < slots:
        raise malformed(where, f"it refers to value {slot!r:.20}, but the graph has {slots} values")
    return slot


def malformed(where, problem):
    """The SerializationError for a file that distrain's save cannot have written."""
    return SerializationError(f"distrain.jit: {where} is malformed: {problem}. distrain's save never writes this: "
                              "the file was changed or written by something else; do not use it.")


def decode_spec(node, where):
    """An input or output structure (structure.py's spec), checked to be one `unflatten` understands."""
    spec = decode_value(node, 0, where)
    _check_spec(spec, where, 0)
    return spec


def _check_spec(spec, where, depth):
    if type(spec) is not tuple or not spec or depth > MAX_DEPTH:
        raise malformed(where, f"an input or output structure is {spec!r:.60}")
    kind = spec[0]
    if kind in ("tensor", "array") and len(spec) == 1:
        return
    if kind == "value" and len(spec) == 3 and type(spec[1]) is str:
        return
    if kind in ("tuple", "list") and len(spec) == 2 and type(spec[1]) is tuple:
        children = spec[1]
    elif kind == "dict" and len(spec) == 3 and type(spec[1]) is tuple and type(spec[2]) is tuple and \
            len(spec[1]) == len(spec[2]):
        children = spec[2]
    else:
        raise malformed(where, f"an input or output structure of kind {kind!r:.20} is malformed")
    for child in children:
        _check_spec(child, where, depth + 1)
