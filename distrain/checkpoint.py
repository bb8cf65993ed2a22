"""Save and load checkpoints: trees of tensors, arrays and plain Python values, without pickle.

`distrain.save(obj, f)` writes nested dicts, lists and tuples of tensors, NumPy (or CuPy)
arrays and plain values to a path or a binary file: state_dicts of models, optimizers and
schedulers, the epoch, the RNG state. `distrain.load(f)` gives the same tree back: tuples stay
tuples, int keys stay ints, tensors keep dtype, shape, requires_grad and device (a Parameter
loads as a plain Tensor, as in a state_dict; `.grad` and the graph are not saved).

Example::

    >>> import distrain
    >>> state = {"epoch": 3, "weight": distrain.randn(2, 3, requires_grad=True),
    ...          "milestones": (30, 60), "rng": distrain.get_rng_state()}
    >>> distrain.save(state, "ckpt.dt")
    >>> restored = distrain.load("ckpt.dt", map_location="cpu")
    >>> restored["epoch"], restored["milestones"], restored["weight"].requires_grad
    (3, (30, 60), True)

No pickle: loading a pickle runs whatever code the file names. A distrain checkpoint is data
only (msgpack for the structure, raw bytes for the arrays), so loading one never runs code.

Nothing is lost: saving to a path writes a temporary file beside the target
(`.NAME.PID.RANDOM.tmp`), fsyncs it, renames it onto the target and fsyncs the directory, so
a process killed at any instant leaves the previous checkpoint whole (a killed save leaves
its temporary file, safe to delete). Every meaningful byte is covered by a CRC-32: a truncated
or damaged file raises `CheckpointError` naming the file and what is wrong.

File format, version 1 (integers little-endian)
-----------------------------------------------
::

    offset 0     preamble, 32 bytes: magic b"\\x89DTCKPT\\n" (8), format version (u32),
                 header length H (u64), file length N (u64), CRC-32 of those 28 bytes (u32)
    offset 32    header: H bytes of msgpack, described below
    offset D     data: D is 32 + H rounded up to a multiple of 64; each array's C-order bytes
                 start at D + its offset, a multiple of 64; padding between is zeros
    offset N-32  footer, 32 bytes: H (u64), N (u64), CRC-32 of preamble + header (u32),
                 CRC-32 of the footer's first 20 bytes (u32), end magic b"DTCKEND\\n" (8)

The preamble's layout is the same in every version. The header is a msgpack map
{"arrays": [entry, ...], "root": tree}. An entry describes one array: {"name": key path where
it was first met, "kind": "tensor" | "ndarray", "dtype": NumPy dtype string such as "<f4",
"shape": [...], "offset": from D, "nbytes", "crc32", "device": "cpu" | "cuda:N",
"requires_grad": bool}. The tree is the saved object, with msgpack's types for None, bool,
int, float, str, bytes, list and dict, and these msgpack extension types:

    1  tuple           the msgpack-packed list of its items
    2  array           the msgpack-packed index of its entry (an object met twice is stored once
                       and loads as one object, so tied weights stay tied)
    3  big integer     two's-complement little-endian bytes (beyond 64 bits, e.g. PCG64 state)
    4  NumPy scalar    the msgpack-packed [dtype string, raw bytes]
"""
from __future__ import annotations

import math
import os
import secrets
import struct
import zlib

import msgpack
import numpy

from .durable import fsync_directory
from .engine import backend
from .engine.factories import as_tensor
from .engine.tensor import Tensor
from .errors import CheckpointError, DeviceError

FORMAT_VERSION = 1
MAGIC = b"\x89DTCKPT\n"  # a high-bit byte and a newline, so text-mode copies are caught (as PNG does)
END_MAGIC = b"DTCKEND\n"
ALIGNMENT = 64
_PREAMBLE = struct.Struct("<8sIQQ")  # followed by its CRC-32 (u32): 32 bytes in all
_FOOTER = struct.Struct("<QQI")  # followed by its CRC-32 (u32) and END_MAGIC: 32 bytes in all
_FRAME_SIZE = 32
_TUPLE, _ARRAY, _BIG_INT, _NUMPY_SCALAR = 1, 2, 3, 4
_MSGPACK_INTS = range(-(1 << 63), 1 << 64)  # what msgpack's own integer types hold
_ARRAY_KINDS = "biufc"  # bool, ints, floats, complex: dtypes whose raw bytes are the whole value
_WHAT_FITS = ("checkpoints hold tensors, arrays and plain Python values "
              "(None, bool, int, float, str, bytes, and lists, tuples and dicts of them)")
_OTHER_FORMATS = {b"PK\x03\x04": "a zip archive (torch.save writes these)", b"\x93NUMPY": "a NumPy .npy file",
                  b"\x80": "a Python pickle"}


def save(obj, f) -> None:
    """Write `obj` (a tree of tensors, arrays and plain values) to `f`, a path or a binary file.

    A path is written atomically: a reader, or a crash at any instant, sees either the old
    checkpoint or the new one, never a mixture. A file object is written from its current
    position and only needs `write`.

    Raises TypeError, before anything is written, naming the key path of a value that
    cannot be saved (a lambda, a set, an arbitrary object, an object-dtype array, a cycle).

    Example::

        >>> import io, distrain
        >>> buffer = io.BytesIO()
        >>> distrain.save({"step": 7, "w": distrain.ones(2)}, buffer)
        >>> _ = buffer.seek(0)
        >>> distrain.load(buffer)["step"]
        7
    """
    encoder = _Encoder()
    root = encoder.encode(obj, "", set())
    chunks = encoder.file_chunks(root)
    if isinstance(f, (str, os.PathLike)):
        _write_atomically(os.fspath(f), chunks)
    else:
        for chunk in chunks:
            f.write(chunk)


def load(f, map_location=None, weights_only=True):
    """Read a checkpoint written by `save` from `f`, a path or a binary file object.

    Args:
        f: a path, or a binary file object (e.g. `open(path, "rb")`, `io.BytesIO`),
            read from its current position and left just past the checkpoint.
        map_location: where tensors and arrays go. None puts each back on the device it was
            saved from; "cpu" or a `distrain.device` puts all of them there; a dict such as
            {"cuda:0": "cpu"} maps saved devices (others stay); a callable
            `fn(cpu_array, saved_device_name)` returns the array to use, a device, or None
            for the default.
        weights_only: accepted for PyTorch compatibility; a distrain checkpoint never holds
            code, so loading is always as safe as PyTorch's weights_only=True.

    Loaded CPU arrays are writable views of one buffer read from the file: no copy is made,
    and the buffer lives as long as any of them does.

    Raises:
        CheckpointError: the file is empty, truncated, damaged, or not a distrain checkpoint.
        DeviceError: a saved device does not exist here and map_location does not move it.
    """
    if isinstance(f, (str, os.PathLike)):
        name = os.fspath(f)
        with open(name, "rb") as file:
            buffer, header_length = _read_verified(file, name)
    else:
        name = str(getattr(f, "name", f"<{type(f).__name__}>"))
        buffer, header_length = _read_verified(f, name)
    document = _unpack(buffer[_FRAME_SIZE:_FRAME_SIZE + header_length], name)
    if not isinstance(document, dict) or not isinstance(document.get("arrays"), list) or "root" not in document:
        raise _error(name, "has a header without its 'arrays' and 'root' fields")
    data_start = _align(_FRAME_SIZE + header_length)
    decoder = _Decoder(name, buffer[data_start:len(buffer) - _FRAME_SIZE], document["arrays"], map_location)
    return decoder.decode(document["root"])


# -- saving --------------------------------------------------------------------------------------------

class _Encoder:
    """Turns a tree into msgpack-ready values, collecting each array's bytes in file order."""

    def __init__(self):
        self.entries = []  # the header's "arrays" table
        self.payloads = []  # (offset from the data start, uint8 view of the bytes)
        self.index_of = {}  # id(array or tensor) -> entry index, so shared objects are stored once
        self.data_length = 0

    def encode(self, obj, path, active):
        if isinstance(obj, Tensor):
            return self._array(obj, path, "tensor")
        is_cupy_array = type(obj).__module__.startswith("cupy") and hasattr(obj, "__cuda_array_interface__")
        if isinstance(obj, numpy.ndarray) or is_cupy_array:
            return self._array(obj, path, "ndarray")
        if isinstance(obj, numpy.generic):  # before float: numpy.float64 is a float subclass
            if obj.dtype.kind not in _ARRAY_KINDS:
                raise _unsupported(obj, path)
            return msgpack.ExtType(_NUMPY_SCALAR, _pack([obj.dtype.str, obj.tobytes()]))
        if obj is None or isinstance(obj, (bool, str, bytes)):
            return obj
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, int):
            if obj in _MSGPACK_INTS:
                return int(obj)
            return msgpack.ExtType(_BIG_INT, obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True))
        if not isinstance(obj, (list, tuple, dict)):
            raise _unsupported(obj, path)
        if id(obj) in active:
            raise TypeError(f"cannot save value at {_where(path)}: it contains itself; {_WHAT_FITS}, without cycles")
        active.add(id(obj))
        prefix = f"{path}." if path else ""
        if isinstance(obj, dict):
            encoded = {}
            for key, value in obj.items():
                if not isinstance(key, (str, int)) or (isinstance(key, int) and key not in _MSGPACK_INTS):
                    raise TypeError(f"cannot save dict key {key!r} at {_where(path)}: "
                                    "checkpoint dict keys are str or int (within 64 bits)")
                encoded[key] = self.encode(value, f"{prefix}{key}", active)
        else:
            items = [self.encode(item, f"{prefix}{index}", active) for index, item in enumerate(obj)]
            encoded = items if isinstance(obj, list) else msgpack.ExtType(_TUPLE, _pack(items))
        active.discard(id(obj))
        return encoded

    def _array(self, obj, path, kind):
        index = self.index_of.get(id(obj))
        if index is not None:
            return msgpack.ExtType(_ARRAY, _pack(index))
        if kind == "tensor":
            device, requires_grad, host = str(obj.device), obj.requires_grad, obj.detach().numpy(force=True)
        else:
            device, requires_grad, host = str(backend.device_of(obj)), False, backend.move_array(obj, backend.CPU)
        if host.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"cannot save the array at {_where(path)}: its dtype {host.dtype} is not a number or bool "
                            "type; checkpoints hold bool, integer, floating-point and complex arrays")
        if not host.flags.c_contiguous:
            host = host.copy(order="C")
        data = host.reshape(-1).view(numpy.uint8)  # reshape first: a 0-d array has no last axis to view
        offset = _align(self.data_length)
        self.entries.append({"name": path, "kind": kind, "dtype": host.dtype.str, "shape": list(host.shape),
                             "offset": offset, "nbytes": data.nbytes, "crc32": zlib.crc32(data),
                             "device": device, "requires_grad": requires_grad})
        self.payloads.append((offset, data))
        self.data_length = offset + data.nbytes
        self.index_of[id(obj)] = index = len(self.entries) - 1
        return msgpack.ExtType(_ARRAY, _pack(index))

    def file_chunks(self, root):
        """The file's bytes, in order, as a list of bytes-like pieces (arrays are not copied)."""
        header = _pack({"arrays": self.entries, "root": root})
        data_start = _align(_FRAME_SIZE + len(header))
        file_length = data_start + self.data_length + _FRAME_SIZE
        preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), file_length)
        preamble += struct.pack("<I", zlib.crc32(preamble))
        chunks, position = [preamble, header, bytes(data_start - _FRAME_SIZE - len(header))], data_start
        for offset, data in self.payloads:
            chunks += [bytes(data_start + offset - position), data]
            position = data_start + offset + data.nbytes
        footer = _FOOTER.pack(len(header), file_length, zlib.crc32(header, zlib.crc32(preamble)))
        chunks.append(footer + struct.pack("<I", zlib.crc32(footer)) + END_MAGIC)
        return chunks


def _write_atomically(path, chunks):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save checkpoint {path}: directory {directory} does not exist; create it first")
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.writelines(chunks)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:  # KeyboardInterrupt too: never leave a half-written temporary file
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(directory)  # the rename lives in the directory: without this a power cut could forget it


# -- loading -------------------------------------------------------------------------------------------

def _read_verified(file, name):
    """The whole checkpoint as one aligned, writable uint8 buffer, and the header length.

    Checks, in order: the magic, the preamble's CRC, the version, the length (truncation),
    the footer, and the header's CRC. Arrays are checked by the decoder as they are built.
    """
    preamble = bytearray(_FRAME_SIZE)
    found = _read_into(file, memoryview(preamble))
    if found == 0:
        raise _error(name, "is empty (0 bytes): it is not a checkpoint; was the save interrupted before it began?")
    head = bytes(preamble[:min(found, len(MAGIC))])
    if head != MAGIC[:len(head)]:
        kind = next((what for magic, what in _OTHER_FORMATS.items() if head.startswith(magic)), None)
        raise _error(name, f"is not a distrain checkpoint: it starts with {head!r}, not {MAGIC!r}"
                           + (f"; it looks like {kind}" if kind else ""))
    if found < _FRAME_SIZE:
        raise _error(name, f"is truncated: found only {found} bytes, not even the {_FRAME_SIZE}-byte preamble; "
                           "the save that wrote it was interrupted — use the previous checkpoint")
    if zlib.crc32(preamble[:_PREAMBLE.size]) != struct.unpack_from("<I", preamble, _PREAMBLE.size)[0]:
        raise _error(name, "has a damaged preamble (its first 32 bytes fail their checksum)")
    _, version, header_length, file_length = _PREAMBLE.unpack_from(preamble)
    if version != FORMAT_VERSION:
        raise _error(name, f"uses checkpoint format version {version}, but this distrain reads version "
                           f"{FORMAT_VERSION}; upgrade distrain to load it")
    if file_length < _align(_FRAME_SIZE + header_length) + _FRAME_SIZE:
        raise _error(name, f"has an impossible preamble: header of {header_length} bytes in a {file_length}-byte file")
    size_on_disk = _size_of(file)
    if size_on_disk is not None and size_on_disk < file_length:
        raise _error(name, f"is truncated: expected {file_length} bytes, found {size_on_disk}; "
                           "the save that wrote it was interrupted — use the previous checkpoint")
    try:
        raw = numpy.empty(file_length + ALIGNMENT, numpy.uint8)
    except MemoryError:
        raise _error(name, f"claims to be {file_length} bytes long, more than this machine can allocate; "
                           "the file is damaged or not a distrain checkpoint") from None
    start = -raw.ctypes.data % ALIGNMENT  # so every array, at a multiple of 64 in the file, is 64-byte aligned
    buffer = raw[start:start + file_length]
    buffer[:_FRAME_SIZE] = numpy.frombuffer(preamble, numpy.uint8)
    found = _FRAME_SIZE + _read_into(file, memoryview(buffer)[_FRAME_SIZE:])
    if found < file_length:
        raise _error(name, f"is truncated: expected {file_length} bytes, found {found}; "
                           "the save that wrote it was interrupted — use the previous checkpoint")
    footer = buffer[-_FRAME_SIZE:].tobytes()
    footer_header_length, footer_file_length, header_crc = _FOOTER.unpack_from(footer)
    footer_crc = struct.unpack_from("<I", footer, _FOOTER.size)[0]
    if (footer[-len(END_MAGIC):] != END_MAGIC or footer_crc != zlib.crc32(footer[:_FOOTER.size])
            or (footer_header_length, footer_file_length) != (header_length, file_length)):
        raise _error(name, f"has a damaged footer (its last {_FRAME_SIZE} bytes): the file was not completely "
                           "written or was changed afterwards — use the previous checkpoint")
    if zlib.crc32(buffer[:_FRAME_SIZE + header_length]) != header_crc:
        raise _error(name, "has a damaged header: it fails its checksum — use the previous checkpoint")
    return buffer, header_length


def _size_of(file):
    """Bytes from the current position to the end, for a real file; None when it cannot tell."""
    try:
        return os.fstat(file.fileno()).st_size - file.tell() + _FRAME_SIZE
    except (AttributeError, OSError, ValueError):
        return None


def _read_into(file, view):
    """Fill `view` from `file` until it is full or the file ends; the number of bytes read.

    Uses `readinto` when the file has it (no copy), else `read` (any file-like object)."""
    filled = 0
    readinto = getattr(file, "readinto", None)
    while filled < len(view):
        if readinto is not None:
            count = readinto(view[filled:])
        else:
            chunk = file.read(len(view) - filled)
            count = len(chunk) if chunk else 0
            view[filled:filled + count] = chunk
        if not count:
            break
        filled += count
    return filled


class _Decoder:
    """Rebuilds the saved tree from the header, turning array references into arrays and tensors."""

    def __init__(self, name, data, entries, map_location):
        self.name, self.data, self.entries, self.loaded = name, data, entries, {}  # loaded: entry index -> object
        if isinstance(map_location, dict):
            map_location = {backend.Device(saved): backend.Device(target) for saved, target in map_location.items()}
        elif not (map_location is None or isinstance(map_location, (str, backend.Device)) or callable(map_location)):
            raise TypeError("map_location must be None, a device such as 'cpu', a dict of devices or a callable, "
                            f"got {type(map_location).__name__}")
        self.map_location = map_location

    def decode(self, node):
        if isinstance(node, list):
            return [self.decode(item) for item in node]
        if isinstance(node, dict):
            return {key: self.decode(value) for key, value in node.items()}
        if not isinstance(node, msgpack.ExtType):
            return node
        if node.code == _TUPLE:
            return tuple(self.decode(item) for item in _unpack(node.data, self.name))
        if node.code == _ARRAY:
            return self._array(_unpack(node.data, self.name))
        if node.code == _BIG_INT:
            return int.from_bytes(node.data, "little", signed=True)
        if node.code == _NUMPY_SCALAR:
            dtype_name, raw = _unpack(node.data, self.name)
            return self._view(numpy.frombuffer(raw, numpy.uint8), dtype_name, (), "a NumPy scalar")[()]
        raise _error(self.name, f"holds a value of unknown extension type {node.code}; "
                                "it was written by a newer distrain — upgrade distrain to load it")

    def _array(self, index):
        try:
            if index in self.loaded:
                return self.loaded[index]
            entry = self.entries[index]
            label, kind, device = repr(entry["name"]), entry["kind"], str(entry["device"])
            start, nbytes, crc = int(entry["offset"]), int(entry["nbytes"]), entry["crc32"]
        except (IndexError, KeyError, TypeError, ValueError):
            raise _error(self.name, f"has a malformed header: array reference {index!r} is incomplete") from None
        if start < 0 or nbytes < 0 or start + nbytes > len(self.data) or kind not in ("tensor", "ndarray"):
            raise _error(self.name, f"has a malformed header: array {label} lies outside the file's data")
        raw = self.data[start:start + nbytes]
        if zlib.crc32(raw) != crc:
            raise _error(self.name, f"is damaged: array {label} failed its checksum — use the previous checkpoint")
        host = self._view(raw, entry.get("dtype"), entry.get("shape"), f"array {label}")
        array = self._place(host, device, label)
        value = array if kind == "ndarray" else as_tensor(array).requires_grad_(bool(entry.get("requires_grad")))
        self.loaded[index] = value
        return value

    def _place(self, host, saved, label):
        """`host` moved to where map_location sends an array saved on device `saved`."""
        location = self.map_location
        if isinstance(location, dict):
            location = location.get(backend.Device(saved))
        elif callable(location):
            location = location(host, saved)
            if location is not None and not isinstance(location, (str, backend.Device)):
                return location  # the callable returned the array itself
        device = backend.Device(saved if location is None else location)
        try:
            return backend.move_array(host, device)
        except DeviceError as exc:
            raise DeviceError(f"checkpoint {self.name}: array {label} belongs on {device}, which is not available "
                              f"here ({exc}). Pass map_location='cpu' to load it on the CPU.") from None

    def _view(self, raw, dtype_name, shape, what):
        """`raw` (uint8) seen as an array of `dtype_name` and `shape`, after checking they fit."""
        try:
            dtype, shape = numpy.dtype(dtype_name), tuple(int(extent) for extent in shape)
            fits = dtype.kind in _ARRAY_KINDS and min(shape, default=0) >= 0
            fits = fits and math.prod(shape) * dtype.itemsize == raw.nbytes
        except (TypeError, ValueError):
            fits = False
        if not fits:
            raise _error(self.name, f"has a malformed header: {what} has dtype {dtype_name!r} and shape {shape!r}, "
                                    f"which do not fit its {raw.nbytes} bytes")
        return raw.view(dtype).reshape(shape)


def _pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data, name):
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _error(name, f"has a header that cannot be decoded ({type(exc).__name__}: {exc})") from None


def _align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _where(path: str) -> str:
    return f"'{path}'" if path else "the top level"


def _unsupported(obj, path):
    return TypeError(f"cannot save value at {_where(path)} of type {type(obj).__name__}: {_WHAT_FITS}")


def _error(name, problem):
    return CheckpointError(f"checkpoint {name} {problem}")
