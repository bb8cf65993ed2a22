"""Writing a checkpoint: the tree becomes a msgpack header plus the arrays' raw bytes,
written to a path atomically (temporary file, fsync, rename, directory fsync)."""
from __future__ import annotations

import os
import struct
import zlib

import msgpack
import numpy

from ..durable import fsync_directory, replace_file
from ..engine import backend
from ..engine.tensor import Tensor
from ..errors import CheckpointWriteError
from .format import (ARRAY, ARRAY_KINDS, BIG_INT, END_MAGIC, FOOTER, FORMAT_VERSION, FRAME_SIZE, MAGIC, MAX_NESTING,
                     NUMPY_SCALAR, PREAMBLE, TUPLE, align, pack, stream_name)

_MSGPACK_INTS = range(-(1 << 63), 1 << 64)  # what msgpack's own integer types hold
_WHAT_FITS = ("checkpoints hold tensors, arrays and plain Python values "
              "(None, bool, int, float, str, bytes, and lists, tuples and dicts of them)")


def save(obj, f) -> None:
    """Write `obj` (a tree of tensors, arrays and plain values) to `f`, a path or a binary file.

    A path is written atomically: a reader, or a crash at any instant, sees either the old
    checkpoint or the new one, never a mixture. A file object is written from its current
    position and only needs `write`.

    Raises TypeError, before anything is written, naming the key path of a value that
    cannot be saved (a lambda, a set, an arbitrary object, an object-dtype array, a cycle,
    containers nested more than MAX_NESTING deep); `CheckpointWriteError` (a CheckpointError
    and an OSError with the original errno) naming the file when the operating system
    refuses the write, e.g. a full disk.

    Example::

        >>> import io, distrain
        >>> buffer = io.BytesIO()
        >>> distrain.save({"step": 7, "w": distrain.ones(2)}, buffer)
        >>> _ = buffer.seek(0)
        >>> distrain.load(buffer)["step"]
        7
    """
    encoder = _Encoder()
    root = encoder.encode(obj, "", set(), 0)
    write_chunks(f, encoder.file_chunks(root), "checkpoint")


def write_chunks(f, chunks, what):
    """Write a file's `chunks` to path `f` atomically, or to the stream `f` (which then may hold a partial `what`)."""
    if isinstance(f, (str, os.PathLike)):
        _write_atomically(os.fspath(f), chunks)
        return
    try:
        for chunk in chunks:
            f.write(chunk)
    except OSError as exc:
        raise _write_error(stream_name(f), exc, f"what reached the stream is an incomplete {what}") from exc


class _Encoder:
    """Turns a tree into msgpack-ready values, collecting each array's bytes in file order."""

    def __init__(self):
        self.entries = []  # the header's "arrays" table
        self.payloads = []  # (offset from the data start, uint8 view of the bytes)
        self.index_of = {}  # id(array or tensor) -> entry index, so shared objects are stored once
        self.data_length = 0

    def encode(self, obj, path, active, depth):
        if isinstance(obj, Tensor):
            return self._array(obj, path, "tensor")
        is_cupy_array = type(obj).__module__.startswith("cupy") and hasattr(obj, "__cuda_array_interface__")
        if isinstance(obj, numpy.ndarray) or is_cupy_array:
            return self._array(obj, path, "ndarray")
        if isinstance(obj, numpy.generic):  # before float: numpy.float64 is a float subclass
            if obj.dtype.kind not in ARRAY_KINDS:
                raise _unsupported(obj, path)
            return msgpack.ExtType(NUMPY_SCALAR, pack([obj.dtype.str, obj.tobytes()]))
        if obj is None or isinstance(obj, (bool, str, bytes)):
            return obj
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, int):
            if obj in _MSGPACK_INTS:
                return int(obj)
            return msgpack.ExtType(BIG_INT, obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True))
        if not isinstance(obj, (list, tuple, dict)):
            raise _unsupported(obj, path)
        if id(obj) in active:
            raise TypeError(f"cannot save value at {_where(path)}: it contains itself; {_WHAT_FITS}, without cycles")
        if depth >= MAX_NESTING:
            raise TypeError(f"cannot save value at {_where(path)}: containers nest more than {MAX_NESTING} deep there; "
                            "checkpoints hold trees of at most that depth — flatten the structure")
        active.add(id(obj))
        prefix = f"{path}." if path else ""
        if isinstance(obj, dict):
            encoded = {}
            for key, value in obj.items():
                if not isinstance(key, (str, int)) or (isinstance(key, int) and key not in _MSGPACK_INTS):
                    raise TypeError(f"cannot save dict key {key!r} at {_where(path)}: "
                                    "checkpoint dict keys are str or int (within 64 bits)")
                encoded[key] = self.encode(value, f"{prefix}{key}", active, depth + 1)
        else:
            items = [self.encode(item, f"{prefix}{index}", active, depth + 1) for index, item in enumerate(obj)]
            encoded = items if isinstance(obj, list) else msgpack.ExtType(TUPLE, pack(items))
        active.discard(id(obj))
        return encoded

    def _array(self, obj, path, kind):
        index = self.index_of.get(id(obj))
        if index is not None:
            return msgpack.ExtType(ARRAY, pack(index))
        if kind == "tensor":
            device, requires_grad, host = str(obj.device), obj.requires_grad, obj.detach().numpy(force=True)
        else:
            device, requires_grad, host = str(backend.device_of(obj)), False, backend.move_array(obj, backend.CPU)
        if host.dtype.kind not in ARRAY_KINDS:
            raise TypeError(f"cannot save the array at {_where(path)}: its dtype {host.dtype} is not a number or bool "
                            "type; checkpoints hold bool, integer, floating-point and complex arrays")
        if not host.flags.c_contiguous:
            host = host.copy(order="C")
        data = host.reshape(-1).view(numpy.uint8)  # reshape first: a 0-d array has no last axis to view
        offset = align(self.data_length)
        self.entries.append({"name": path, "kind": kind, "dtype": host.dtype.str, "shape": list(host.shape),
                             "offset": offset, "nbytes": data.nbytes, "crc32": zlib.crc32(data),
                             "device": device, "requires_grad": requires_grad})
        self.payloads.append((offset, data))
        self.data_length = offset + data.nbytes
        self.index_of[id(obj)] = index = len(self.entries) - 1
        return msgpack.ExtType(ARRAY, pack(index))

    def file_chunks(self, root):
        """The file's bytes, in order, as a list of bytes-like pieces (arrays are not copied)."""
        header = pack({"arrays": self.entries, "root": root})
        data_start = align(FRAME_SIZE + len(header))
        file_length = data_start + self.data_length + FRAME_SIZE
        preamble = PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), file_length)
        preamble += struct.pack("<I", zlib.crc32(preamble))
        chunks, position = [preamble, header, bytes(data_start - FRAME_SIZE - len(header))], data_start
        for offset, data in self.payloads:
            chunks += [bytes(data_start + offset - position), data]
            position = data_start + offset + data.nbytes
        footer = FOOTER.pack(len(header), file_length, zlib.crc32(header, zlib.crc32(preamble)))
        chunks.append(footer + struct.pack("<I", zlib.crc32(footer)) + END_MAGIC)
        return chunks


def _write_atomically(path, chunks):
    """durable.replace_file, its OSErrors turned into CheckpointWriteErrors that say what became of the file."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save checkpoint {path}: directory {directory} does not exist; create it first")
    try:  # dead writers' temporaries go first: a full disk may be full of them
        replace_file(path, lambda file: file.writelines(chunks), sync_directory=False)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        fsync_directory(directory)  # the rename lives in the directory: without this a power cut could forget it
    except OSError as exc:
        raise _write_error(path, exc, "the new checkpoint is in place but a power cut could still undo it") from exc


_UNCHANGED = "the previous checkpoint at that path, if any, is unchanged — free space or fix the path and save again"


def _write_error(name, exc, consequence=_UNCHANGED):
    """A CheckpointWriteError for an OSError met while saving to `name`, keeping its errno."""
    reason = (exc.strerror or str(exc)) + ("" if exc.errno is None else f" (errno {exc.errno})")
    error = CheckpointWriteError(f"cannot save checkpoint {name}: {reason}; {consequence}")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, name
    return error


def _where(path: str) -> str:
    return f"'{path}'" if path else "the top level"


def _unsupported(obj, path):
    hint = "; save its state_dict() instead" if callable(getattr(obj, "state_dict", None)) else ""  # a Module
    return TypeError(f"cannot save value at {_where(path)} of type {type(obj).__name__}: {_WHAT_FITS}{hint}")
