"""Decoding a checkpoint's header, which may be forged: every field is checked before it is used.

The header's "arrays" table is checked whole (types, dtypes, shapes against byte counts,
ranges inside the data, file order without overlaps) before any array is viewed, and the
tree is walked with its depth bounded by MAX_NESTING, so a hostile file meets a
CheckpointError naming it, never a RecursionError, a huge allocation or a shared buffer.
"""
from __future__ import annotations

import math
import re
import zlib

import msgpack
import numpy

from ..engine import backend
from ..engine.factories import as_tensor
from ..errors import DeviceError
from .format import ALIGNMENT, ARRAY, BIG_INT, MAX_NESTING, NUMPY_SCALAR, TUPLE, error, unpack
from .placement import Placement

_DTYPE_STRING = re.compile(r"[<>|=][biufc][0-9]{1,2}")  # what dtype.str gives for those kinds, nothing else
_MAX_DIMENSIONS = 64  # NumPy's limit
_ENTRY_FIELDS = {"name": str, "kind": str, "dtype": str, "shape": list, "offset": int, "nbytes": int, "crc32": int,
                 "device": str, "requires_grad": bool}


def checked_entry(name, entry, index, data_length):
    """One entry of the header's "arrays" table, after checking every field before any use.

    Returns (label, kind, dtype, shape, offset, nbytes, crc32, device name, requires_grad).
    """
    if not isinstance(entry, dict):
        raise error(name, f"has a malformed header: array entry {index} is a {type(entry).__name__}, not a map")
    for field, kind in _ENTRY_FIELDS.items():
        value = entry.get(field)
        if type(value) is not kind:  # exact: a bool is not an int here, nor an int a bool
            raise error(name, f"has a malformed header: array entry {index} has field {field!r} = {value!r:.80}, "
                               f"not a {kind.__name__}")
    label = repr(entry["name"][:200])
    if entry["kind"] not in ("tensor", "ndarray"):
        raise error(name, f"has a malformed header: array {label} is of unknown kind {entry['kind']!r:.40}")
    dtype = checked_dtype(name, entry["dtype"], f"array {label}")
    shape = entry["shape"]
    if len(shape) > _MAX_DIMENSIONS or not all(type(extent) is int and extent >= 0 for extent in shape):
        raise error(name, f"has a malformed header: array {label} has shape {shape!r:.200}; a shape is at most "
                           f"{_MAX_DIMENSIONS} non-negative integers")
    offset, nbytes, crc = entry["offset"], entry["nbytes"], entry["crc32"]
    if math.prod(shape) * dtype.itemsize != nbytes:  # Python integers: a huge shape cannot wrap around
        raise error(name, f"has a malformed header: array {label} has dtype {dtype.str!r} and shape {shape!r:.200}, "
                           f"which do not fit its {nbytes} bytes")
    if offset < 0 or offset % ALIGNMENT or nbytes < 0 or offset + nbytes > data_length or not 0 <= crc < 1 << 32:
        raise error(name, f"has a malformed header: array {label} lies outside the file's data "
                           f"(bytes {offset} to {offset + nbytes} of {data_length}, or a bad checksum field)")
    try:
        device = str(backend.Device(entry["device"]))
    except DeviceError:
        raise error(name, f"has a malformed header: array {label} names device {entry['device']!r:.40}, which is "
                           "not a device name such as 'cpu' or 'cuda:0'") from None
    if entry["requires_grad"] and dtype.kind != "f":
        raise error(name, f"has a malformed header: array {label} of dtype {dtype} cannot require a gradient")
    return label, entry["kind"], dtype, tuple(shape), offset, nbytes, crc, device, entry["requires_grad"]


def check_order(name, entries):
    """Arrays lie in file order without overlapping, as `save` writes them: a forged header
    cannot make two loaded arrays share (and silently change each other's) memory."""
    end = 0
    for label, _, _, _, offset, nbytes, *_ in entries:
        if offset < end:
            raise error(name, f"has a malformed header: array {label} overlaps the array before it")
        end = offset + nbytes


def checked_dtype(name, dtype_name, what):
    """The NumPy dtype a header names, when it is one `save` writes (bool, int, float, complex)."""
    if type(dtype_name) is not str or _DTYPE_STRING.fullmatch(dtype_name) is None:
        raise error(name, f"has a malformed header: {what} has dtype {dtype_name!r:.40}; checkpoints hold bool, "
                           "integer, floating-point and complex arrays, written like '<f4'")
    try:
        return numpy.dtype(dtype_name)
    except TypeError:
        raise error(name, f"has a malformed header: {what} has dtype {dtype_name!r}, which NumPy does not know") from None


class Decoder:
    """Rebuilds the saved tree from the header, turning array references into arrays and tensors."""

    def __init__(self, name, data, entries, map_location):
        self.name, self.data, self.entries, self.loaded = name, data, entries, {}  # loaded: entry index -> object
        self.placement = Placement(name, map_location)

    def decode(self, node, depth):
        """The value `node` stands for; recursion is bounded by MAX_NESTING, whatever the file says."""
        if depth > MAX_NESTING:
            raise error(self.name, f"has a malformed header: its values nest more than {MAX_NESTING} deep, "
                                    "deeper than save writes")
        if isinstance(node, list):
            return [self.decode(item, depth + 1) for item in node]
        if isinstance(node, dict):
            decoded = {}
            for key, value in node.items():
                if type(key) not in (str, int):
                    raise error(self.name, f"has a malformed header: a dict key is a {type(key).__name__}; "
                                            "checkpoint dict keys are str or int")
                decoded[key] = self.decode(value, depth + 1)
            return decoded
        if node is None or type(node) in (bool, int, float, str, bytes):
            return node
        if not isinstance(node, msgpack.ExtType):
            raise error(self.name, f"has a malformed header: it holds a value of type {type(node).__name__}, "
                                    "which save never writes")
        content = unpack(node.data, self.name) if node.code in (TUPLE, ARRAY, NUMPY_SCALAR) else None
        if node.code == TUPLE and type(content) is list:
            return tuple(self.decode(item, depth + 1) for item in content)
        if node.code == ARRAY and type(content) is int:
            return self._array(content)
        if node.code == BIG_INT:
            return int.from_bytes(node.data, "little", signed=True)
        if node.code == NUMPY_SCALAR and type(content) is list and len(content) == 2 and type(content[1]) is bytes:
            dtype = checked_dtype(self.name, content[0], "a NumPy scalar")
            raw = numpy.frombuffer(content[1], numpy.uint8)
            if raw.nbytes != dtype.itemsize:
                raise error(self.name, f"has a malformed header: a NumPy scalar of dtype {dtype.str!r} has "
                                        f"{raw.nbytes} bytes, not {dtype.itemsize}")
            return raw.view(dtype).reshape(())[()]
        if node.code in (TUPLE, ARRAY, NUMPY_SCALAR):
            raise error(self.name, f"has a malformed header: a value of extension type {node.code} holds "
                                    f"{type(content).__name__} {content!r:.80}")
        raise error(self.name, f"holds a value of unknown extension type {node.code}; "
                                "it was written by a newer distrain — upgrade distrain to load it")

    def _array(self, index):
        if index in self.loaded:
            return self.loaded[index]
        if not 0 <= index < len(self.entries):
            raise error(self.name, f"has a malformed header: it refers to array {index}, but lists "
                                    f"{len(self.entries)} arrays")
        label, kind, dtype, shape, start, nbytes, crc, device, requires_grad = self.entries[index]
        raw = self.data[start:start + nbytes]
        if zlib.crc32(raw) != crc:
            raise error(self.name, f"is damaged: array {label} failed its checksum — use the previous checkpoint")
        array = self.placement.place(raw.view(dtype).reshape(shape), device, label)
        value = array if kind == "ndarray" else as_tensor(array).requires_grad_(requires_grad)
        self.loaded[index] = value
        return value
