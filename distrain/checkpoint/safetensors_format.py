"""Reading and writing safetensors files: a flat dict of name -> tensor, data only, no pickle.

The format (https://github.com/huggingface/safetensors), integers little-endian::

    8 bytes   N, the header's length
    N bytes   a JSON object: {"__metadata__": {str: str} (optional),
              name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
              padded with spaces so the data starts on a multiple of 8
    the data  each tensor's C-order bytes at [begin, end) from the data's start

It is simple enough that distrain reads and writes it itself, with no dependency: the header is
checked field by field before anything is viewed (a forged file meets a CheckpointError naming
it), a path is written atomically like every distrain checkpoint, and bfloat16 ("BF16") tensors,
which NumPy cannot hold, load as float32 (exactly). Files written here load with the
`safetensors` library (`safetensors.numpy.load_file`, `safetensors.torch.load_file`) and the other
way round. Tensors are written in order of decreasing element size, then name, as the library
does, so each starts aligned; tensors that share memory (tied weights) are each written in full.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import struct

import numpy

from ..engine import backend
from ..engine.factories import as_tensor
from ..engine.tensor import Tensor
from .format import error, stream_name
from .placement import Placement
from .reader import _aligned_buffer, _read_into, _remaining_size
from .writer import write_chunks

MAX_HEADER = 100_000_000  # bytes; the safetensors library's own limit
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?", "C64": "<c8"}
_CODES = {numpy.dtype(spelling): code for code, spelling in DTYPES.items() if code != "BF16"}


def looks_like_safetensors(head: bytes, size) -> bool:
    """Whether a file of `size` bytes (None: unknown) starting with `head` (>= 9 bytes) is a safetensors file."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    length = struct.unpack_from("<Q", head)[0]
    return 2 <= length <= MAX_HEADER and (size is None or 8 + length <= size)


def load_safetensors(f, map_location=None):
    """The tensors of a safetensors file `f` (a path or a binary file), as a dict name -> distrain Tensor.

    map_location works as in `distrain.load` (the file's tensors count as saved on "cpu").

    Example::

        >>> import distrain
        >>> distrain.save({"w": distrain.ones(2, 3)}, "w.safetensors")
        >>> distrain.checkpoint.load_safetensors("w.safetensors")["w"].tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as file:
            return _read(file, os.fspath(f), Placement(os.fspath(f), map_location))
    return _read(f, stream_name(f), Placement(stream_name(f), map_location))


def _read(file, name, placement):
    prefix = file.read(8)
    length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
    remaining = _remaining_size(file)
    if length is None or length > MAX_HEADER or remaining is None or length > remaining:
        raise error(name, "is not a complete safetensors file: its 8-byte header length is missing or larger "
                          "than the file")
    try:
        header = json.loads(file.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:100]}"
        raise error(name, f"has a safetensors header that is not JSON ({problem})") from None
    data = _aligned_buffer(name, remaining - length)
    if _read_into(file, memoryview(data)) != data.nbytes:
        raise error(name, "is truncated: its data ended early")
    if not isinstance(header, dict):
        raise error(name, "has a safetensors header that is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        raise error(name, "has a safetensors __metadata__ that is not a map of strings")
    entries = sorted((_checked(name, key, entry, data.nbytes) for key, entry in header.items()), key=lambda e: e[3])
    for before, after in itertools.pairwise(entries):
        if after[3] < before[3] + before[4]:
            raise error(name, f"has tensors {before[0]!r} and {after[0]!r} whose bytes overlap")
    tensors = {}
    for key, code, shape, begin, nbytes in sorted(entries):
        host = data[begin:begin + nbytes].view(DTYPES[code]).reshape(shape)
        if code == "BF16":  # the top 16 bits of a float32: widening is exact
            host = (host.astype(numpy.uint32) << 16).view(numpy.float32)
        tensors[key] = as_tensor(placement.place(host, "cpu", repr(key)))
    return tensors


def _checked(name, key, entry, data_length):
    """(name, dtype code, shape, begin, nbytes) of one header entry, every field checked first."""
    label = repr(key[:200])
    if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
        raise error(name, f"has a malformed safetensors entry for tensor {label}: {entry!r:.200}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in DTYPES:
        raise error(name, f"holds tensor {label} of dtype {code!r:.20}, which distrain does not read "
                          f"(it reads {', '.join(DTYPES)})")
    if not (isinstance(shape, list) and len(shape) <= 64 and all(type(n) is int and n >= 0 for n in shape)
            and isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_length):
        raise error(name, f"has a malformed safetensors entry for tensor {label}: shape {shape!r:.100}, "
                          f"data_offsets {offsets!r:.60} in {data_length} bytes of data")
    nbytes = offsets[1] - offsets[0]
    if math.prod(shape) * numpy.dtype(DTYPES[code]).itemsize != nbytes:
        raise error(name, f"has tensor {label} of dtype {code} and shape {shape} in {nbytes} bytes, which do not fit")
    return key, code, tuple(shape), offsets[0], nbytes


def save_safetensors(tensors, f, metadata=None):
    """Write `tensors`, a dict name -> Tensor or array, to `f` (a path, written atomically, or a binary
    file) in the safetensors format; `metadata` is an optional dict of strings stored beside them.

    `distrain.save(state_dict, "model.safetensors")` calls this for paths ending in .safetensors.

    Raises TypeError, before anything is written, naming a key whose value is not a tensor or
    whose dtype safetensors cannot hold; `CheckpointWriteError` when the system refuses the write.
    """
    if not isinstance(tensors, dict):
        hint = ("; save its state_dict() instead" if callable(getattr(tensors, "state_dict", None)) else "")
        raise TypeError(f"a safetensors file holds a dict of name -> tensor, not a {type(tensors).__name__}{hint}")
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError("safetensors metadata is a dict of str -> str")
    arrays = {key: _host_array(key, value) for key, value in tensors.items()}
    order = sorted(arrays, key=lambda key: (-arrays[key].dtype.itemsize, key))
    header, position = ({"__metadata__": metadata} if metadata else {}), 0
    for key in order:
        array = arrays[key]
        header[key] = {"dtype": _CODES[array.dtype], "shape": list(array.shape),
                       "data_offsets": [position, position + array.nbytes]}
        position += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    chunks = [struct.pack("<Q", len(encoded)), encoded] + [arrays[key].reshape(-1).view(numpy.uint8) for key in order]
    write_chunks(f, chunks, "safetensors file")


def _host_array(key, value):
    """`value` as a C-contiguous little-endian NumPy array, or a TypeError naming `key`."""
    if not isinstance(key, str):
        raise TypeError(f"safetensors names are str, got {key!r:.60}")
    if isinstance(value, Tensor):
        host = value.detach().numpy(force=True)
    elif isinstance(value, numpy.ndarray) or hasattr(value, "__cuda_array_interface__"):
        host = backend.move_array(value, backend.CPU)
    else:
        raise TypeError(f"cannot save {key!r} of type {type(value).__name__} in a safetensors file, which holds "
                        "only tensors; save nested checkpoints with distrain.save to a .dt path")
    if not host.flags.c_contiguous or host.dtype.byteorder == ">":
        host = host.astype(host.dtype.newbyteorder("<"), order="C")
    if host.dtype not in _CODES:
        raise TypeError(f"cannot save {key!r} of dtype {host.dtype} in a safetensors file; it holds "
                        f"{', '.join(sorted(str(dtype) for dtype in _CODES))}")
    return host
