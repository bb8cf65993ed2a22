"""A `Graph` as plain data (for the checkpoint writer) and back, every field checked on the way in.

Writing: instructions, values and arguments become trees of None, bool, int, float, str,
bytes, tuples, NumPy scalars and arrays (what distrain.checkpoint stores), with tagged
lists for the rest (see `encode_value`); every callable becomes its importable name
(portable_names.py). Reading: the file may be forged, and the replay's Python source is
generated from it (codegen.py), so nothing reaches the generator unchecked: slots are in
range and of the right kind, method and keyword names are identifiers an ndarray has,
operator symbols are the ones the recorder writes, names resolve inside the allow-list.
"""
from __future__ import annotations

import keyword

import numpy

from .checked_calls import checked_version, original
from .graph import Graph, Instruction, Ref, Value
from .portable_names import portable_name, resolve
from .traced_array import (
    BINARY_OPERATORS,
    COMPARISONS,
    ESCAPING_METHODS,
    INPLACE_OPERATORS,
    UNARY_OPERATORS,
)
from .value_encoding import checked_slot, decode_value, encode_value, malformed

KINDS = ("call", "method", "attribute", "operator", "inplace", "getitem", "setitem", "draw")
VALUE_KINDS = ("input", "state", "constant", "result")
ATTRIBUTES = frozenset({"T", "mT", "real", "imag"})  # what TracedArray records as attributes
DRAWS = frozenset({"normal", "uniform", "integers", "permutation"})  # random.Generator._draw_*
# methods a loaded graph may not call even though ndarray has them: Python values, files, memory reallocation
REFUSED_METHODS = ESCAPING_METHODS | {"resize", "setflags", "tofile", "dump", "dumps"}
ERRSTATE = ({"divide", "over", "under", "invalid"}, {"ignore", "warn", "raise", "call", "print", "log"})
_BINARY = {symbol: function for symbol, function in [*BINARY_OPERATORS.values(), *COMPARISONS.values()]}
_UNARY = {symbol: function for symbol, function in UNARY_OPERATORS.values()}
_INPLACE = {symbol: function for symbol, function in INPLACE_OPERATORS.values()}


# -- instructions and values --------------------------------------------------------------------
def encode_graph(graph: Graph):
    """The graph's values, instructions, inputs, output and constants as checkpoint data."""
    instructions = [_encode_instruction(index, instruction) for index, instruction in enumerate(graph.instructions)]
    values = [{"kind": v.kind, "shape": tuple(v.shape), "dtype": encode_value(v.dtype, f"value %{v.slot}"),
               "strides": tuple(v.strides), "root": v.root, "producer": v.producer, "name": v.name,
               "contiguous": v.contiguous, "array_type": _array_type_name(v)} for v in graph.values]
    return {"values": values, "instructions": instructions, "inputs": tuple(graph.inputs),
            "output": encode_value(graph.output, "the graph's output"),
            "constants": [[slot, array] for slot, array in graph.constants.items()]}


def _array_type_name(value):
    """numpy.ndarray / cupy.ndarray / a NumPy scalar type (a 0-d reduction result) as a name, or None."""
    array_type = value.array_type
    if array_type is None or array_type is numpy.ndarray:
        return None if array_type is None else "numpy.ndarray"
    if issubclass(array_type, numpy.generic):
        return portable_name(array_type, f"the type of value %{value.slot}")
    return "cupy.ndarray"


def _array_type(name, where):
    if name is None or name == "numpy.ndarray":
        return None if name is None else numpy.ndarray
    if name == "cupy.ndarray":
        from ..backend import cupy_module

        return cupy_module().ndarray
    found = resolve(name, "value")
    if not (isinstance(found, type) and issubclass(found, numpy.generic)):
        raise malformed(where, f"array type {name!r:.60} is not an array or NumPy scalar type")
    return found


def _encode_instruction(index, instruction):
    where = f"instruction {index} ({instruction.describe()[:120]}, at {instruction.location or 'an unknown place'})"
    kind, target = instruction.kind, instruction.target
    if kind == "call":
        target = portable_name(original(target), where)
    elif kind == "draw":
        target = tuple(target)
    return {"kind": kind, "target": target, "args": encode_value(tuple(instruction.args), where),
            "kwargs": encode_value(dict(instruction.kwargs), where), "outputs": tuple(instruction.outputs),
            "many": instruction.many, "writes": tuple(instruction.writes), "location": instruction.location,
            "effect": instruction.effect, "errstate": tuple(tuple(pair) for pair in instruction.errstate)}


def decode_graph(tree, where):
    """The Graph `tree` describes (state arrays are bound by the caller; `draws` too)."""
    if type(tree) is not dict:
        raise malformed(where, "the graph is not a map")
    values = [_decode_value_entry(index, entry, where) for index, entry in enumerate(_list(tree, "values", where))]
    graph = Graph(values=values)
    slots = len(values)
    for value in values:
        checked_slot(value.root, slots, f"{where}, value %{value.slot}")
    graph.inputs = [checked_slot(slot, slots, f"{where}, inputs") for slot in _list(tree, "inputs", where)]
    for index, entry in enumerate(_list(tree, "instructions", where)):
        graph.instructions.append(_decode_instruction(entry, slots, f"{where}, instruction {index}"))
    graph.output = decode_value(tree.get("output"), slots, f"{where}, output")
    if type(graph.output) is not tuple or len(graph.output) != 2:
        raise malformed(where, "its output is not (outputs, new gradients)")
    for pair in _list(tree, "constants", where):
        if type(pair) is not list or len(pair) != 2 or not hasattr(pair[1], "shape"):
            raise malformed(where, "a constant is not a (slot, array) pair")
        graph.constants[checked_slot(pair[0], slots, f"{where}, constants")] = pair[1]
    _check_kinds(graph, where)
    return graph


def _list(tree, key, where):
    found = tree.get(key)
    if type(found) not in (list, tuple):
        raise malformed(where, f"its {key!r} field is a {type(found).__name__}, not a list")
    return found


def _decode_value_entry(index, entry, where):
    where = f"{where}, value %{index}"
    fields = {"kind": str, "shape": tuple, "strides": tuple, "root": int, "producer": int, "name": str,
              "contiguous": bool}
    if type(entry) is not dict or any(type(entry.get(key)) is not kind for key, kind in fields.items()):
        raise malformed(where, f"a value is not a map with fields {sorted(fields)}")
    dtype = decode_value(entry.get("dtype"), 0, where)
    if entry["kind"] not in VALUE_KINDS or not isinstance(dtype, numpy.dtype):
        raise malformed(where, f"value of kind {entry['kind']!r:.20} with dtype {dtype!r:.40}")
    if not all(type(n) is int and n >= 0 for n in entry["shape"]) or not all(type(n) is int for n in entry["strides"]):
        raise malformed(where, "a shape or strides entry is not an integer")
    return Value(index, entry["kind"], entry["shape"], dtype, entry["strides"], entry["root"], entry["producer"],
                 entry["name"], entry["contiguous"], _array_type(entry.get("array_type"), where))


def _decode_instruction(entry, slots, where):
    if type(entry) is not dict:
        raise malformed(where, "an instruction is not a map")
    kind, target = entry.get("kind"), entry.get("target")
    if kind not in KINDS:
        raise malformed(where, f"instruction kind {kind!r:.40} is unknown")
    args = decode_value(entry.get("args"), slots, where)
    kwargs = decode_value(entry.get("kwargs"), slots, where)
    if type(args) is not tuple or type(kwargs) is not dict:
        raise malformed(where, "its arguments are not a tuple and a dict")
    for key in kwargs:
        if type(key) is not str or not key.isidentifier() or keyword.iskeyword(key):
            raise malformed(where, f"keyword argument name {key!r:.60} is not an identifier")
    target, function = _decode_target(kind, target, args, where)
    outputs = tuple(checked_slot(slot, slots, where) for slot in _sequence(entry.get("outputs"), where))
    writes = tuple(checked_slot(slot, slots, where) for slot in _sequence(entry.get("writes"), where))
    errstate = tuple(tuple(pair) for pair in _sequence(entry.get("errstate"), where))
    for pair in errstate:
        if len(pair) != 2 or pair[0] not in ERRSTATE[0] or pair[1] not in ERRSTATE[1]:
            raise malformed(where, f"NumPy error setting {pair!r:.60} is not one numpy.errstate takes")
    many, effect, location = entry.get("many"), entry.get("effect"), entry.get("location")
    if type(many) is not bool or type(effect) is not bool or type(location) is not str:
        raise malformed(where, "its many/effect/location fields are of the wrong types")
    if kind in ("getitem", "setitem") and len(args) != (2 if kind == "getitem" else 3):
        raise malformed(where, f"{kind} has {len(args)} arguments")
    if kind in ("method", "attribute") and (not args or type(args[0]) is not Ref):
        raise malformed(where, f"{kind} {target} has no array to act on")
    return Instruction(kind, target, args, kwargs, outputs, many, writes, location, function, effect, errstate)


def _sequence(found, where):
    if type(found) not in (list, tuple):
        raise malformed(where, f"a field is a {type(found).__name__}, not a list")
    return found


def _decode_target(kind, target, args, where):
    """(target, operator function) for an instruction, after checking what codegen writes into the source."""
    if kind == "call":
        return checked_version(resolve(target, "call"), target), None
    if kind == "method":
        if type(target) is not str or not target.isidentifier() or target.startswith("_") or \
                target in REFUSED_METHODS or not callable(getattr(numpy.ndarray, target, None)):
            raise malformed(where, f"method {target!r:.60} is not one a saved graph may call on an array")
        return target, None
    if kind == "attribute":
        if target not in ATTRIBUTES:
            raise malformed(where, f"attribute {target!r:.60} is not one a saved graph may read")
        return target, None
    if kind == "operator":
        table = _BINARY if len(args) == 2 else _UNARY if len(args) == 1 else {}
        if type(target) is not str or target not in table:
            raise malformed(where, f"operator {target!r:.20} with {len(args)} operands is not one distrain records")
        return target, table[target]
    if kind == "inplace":
        if type(target) is not str or target not in _INPLACE or len(args) != 2:
            raise malformed(where, f"in-place operator {target!r:.20} is not one distrain records")
        return target, _INPLACE[target]
    if kind in ("getitem", "setitem"):
        return ("[]" if kind == "getitem" else "[]="), None
    if type(target) is not tuple or len(target) != 2 or type(target[0]) is not str or target[1] not in DRAWS:
        raise malformed(where, f"random draw {target!r:.60} is not one distrain's generators make")
    return target, None


def _check_kinds(graph, where):
    """Inputs, constants and (later) state slots are values of those kinds: codegen trusts it."""
    for slot in graph.inputs:
        if graph.values[slot].kind != "input":
            raise malformed(where, f"input slot %{slot} is a {graph.values[slot].kind} value")
    for slot in graph.constants:
        if graph.values[slot].kind != "constant":
            raise malformed(where, f"constant slot %{slot} is a {graph.values[slot].kind} value")
    missing = [v.slot for v in graph.values if v.kind == "constant" and v.slot not in graph.constants]
    if missing:
        raise malformed(where, f"constant values {missing[:5]} have no saved array")
