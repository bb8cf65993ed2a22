"""The checkpoint file format's constants and the small pieces its reader and writer share.

The format itself is described once, in the package docstring (distrain/checkpoint/__init__.py).
"""
from __future__ import annotations

import struct

import msgpack

from ..errors import CheckpointError

FORMAT_VERSION = 1
MAGIC = b"\x89DTCKPT\n"  # a high-bit byte and a newline, so text-mode copies are caught (as PNG does)
END_MAGIC = b"DTCKEND\n"
ALIGNMENT = 64
PREAMBLE = struct.Struct("<8sIQQ")  # followed by its CRC-32 (u32): 32 bytes in all
FOOTER = struct.Struct("<QQI")  # followed by its CRC-32 (u32) and END_MAGIC: 32 bytes in all
FRAME_SIZE = 32
TUPLE, ARRAY, BIG_INT, NUMPY_SCALAR = 1, 2, 3, 4  # msgpack extension type codes
ARRAY_KINDS = "biufc"  # bool, ints, floats, complex: dtypes whose raw bytes are the whole value
MAX_NESTING = 100  # containers in a checkpoint nest at most this deep (state_dicts need a handful)


def pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data, name):
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise error(name, f"has a header that cannot be decoded ({type(exc).__name__}: {exc})") from None


def align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def error(name, problem):
    return CheckpointError(f"checkpoint {name} {problem}")


def stream_name(file):
    return str(getattr(file, "name", f"<{type(file).__name__}>"))
