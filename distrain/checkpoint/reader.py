"""Reading a checkpoint: the frame (magic, lengths, checksums) is verified before the header
is decoded, and nothing is allocated beyond what the file was seen to hold."""
from __future__ import annotations

import os
import struct
import zlib

import numpy

from .format import (ALIGNMENT, END_MAGIC, FOOTER, FORMAT_VERSION, FRAME_SIZE, MAGIC, PREAMBLE, align, error,
                     stream_name, unpack)
from .header import Decoder, check_order, checked_entry

_READ_CHUNK = 16 << 20  # a stream of unknown length is read this much at a time, never trusting the header
_OTHER_FORMATS = {b"PK\x03\x04": "a zip archive (torch.save writes these; distrain.load reads them from a path or "
                                  "a seekable file)", b"\x93NUMPY": "a NumPy .npy file",
                  b"\x80": "a Python pickle"}


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
            buffer, header_length = read_verified(file, name)
    else:
        name = stream_name(f)
        buffer, header_length = read_verified(f, name)
    document = unpack(buffer[FRAME_SIZE:FRAME_SIZE + header_length], name)
    if not isinstance(document, dict) or not isinstance(document.get("arrays"), list) or "root" not in document:
        raise error(name, "has a header without its 'arrays' and 'root' fields")
    data = buffer[align(FRAME_SIZE + header_length):len(buffer) - FRAME_SIZE]
    entries = [checked_entry(name, entry, index, data.nbytes) for index, entry in enumerate(document["arrays"])]
    check_order(name, entries)
    return Decoder(name, data, entries, map_location).decode(document["root"], 0)


def read_verified(file, name):
    """The whole checkpoint as one aligned, writable uint8 buffer, and the header length.

    Checks, in order: the magic, the preamble's CRC, the version, the length (truncation),
    the footer, and the header's CRC. Arrays are checked by the decoder as they are built.
    """
    preamble = bytearray(FRAME_SIZE)
    found = _read_into(file, memoryview(preamble))
    if found == 0:
        raise error(name, "is empty (0 bytes): it is not a checkpoint; was the save interrupted before it began?")
    head = bytes(preamble[:min(found, len(MAGIC))])
    if head != MAGIC[:len(head)]:
        kind = next((what for magic, what in _OTHER_FORMATS.items() if head.startswith(magic)), None)
        raise error(name, f"is not a distrain checkpoint: it starts with {head!r}, not {MAGIC!r}"
                           + (f"; it looks like {kind}" if kind else ""))
    if found < FRAME_SIZE:
        raise error(name, f"is truncated: found only {found} bytes, not even the {FRAME_SIZE}-byte preamble; "
                           "the save that wrote it was interrupted — use the previous checkpoint")
    if zlib.crc32(preamble[:PREAMBLE.size]) != struct.unpack_from("<I", preamble, PREAMBLE.size)[0]:
        raise error(name, "has a damaged preamble (its first 32 bytes fail their checksum)")
    _, version, header_length, file_length = PREAMBLE.unpack_from(preamble)
    if version != FORMAT_VERSION:
        raise error(name, f"uses checkpoint format version {version}, but this distrain reads version "
                           f"{FORMAT_VERSION}; upgrade distrain to load it")
    if file_length < align(FRAME_SIZE + header_length) + FRAME_SIZE:
        raise error(name, f"has an impossible preamble: header of {header_length} bytes in a {file_length}-byte file")
    size = _remaining_size(file)
    if size is not None and FRAME_SIZE + size < file_length:
        raise error(name, f"is truncated: expected {file_length} bytes, found {FRAME_SIZE + size}; "
                           "the save that wrote it was interrupted — use the previous checkpoint")
    # Allocate what the file was seen to hold; a stream of unknown length only as its bytes arrive.
    buffer = _aligned_buffer(name, file_length if size is not None else min(file_length, FRAME_SIZE + _READ_CHUNK))
    buffer[:FRAME_SIZE] = numpy.frombuffer(preamble, numpy.uint8)
    found = FRAME_SIZE
    while True:
        found += _read_into(file, memoryview(buffer)[found:])
        if found < len(buffer) or len(buffer) == file_length:
            break
        grown = _aligned_buffer(name, min(file_length, 2 * len(buffer)))
        grown[:found] = buffer
        buffer = grown
    if found < file_length:
        raise error(name, f"is truncated: expected {file_length} bytes, found {found}; "
                           "the save that wrote it was interrupted — use the previous checkpoint")
    footer = buffer[-FRAME_SIZE:].tobytes()
    footer_header_length, footer_file_length, header_crc = FOOTER.unpack_from(footer)
    footer_crc = struct.unpack_from("<I", footer, FOOTER.size)[0]
    if (footer[-len(END_MAGIC):] != END_MAGIC or footer_crc != zlib.crc32(footer[:FOOTER.size])
            or (footer_header_length, footer_file_length) != (header_length, file_length)):
        raise error(name, f"has a damaged footer (its last {FRAME_SIZE} bytes): the file was not completely "
                           "written or was changed afterwards — use the previous checkpoint")
    if zlib.crc32(buffer[:FRAME_SIZE + header_length]) != header_crc:
        raise error(name, "has a damaged header: it fails its checksum — use the previous checkpoint")
    return buffer, header_length


def _remaining_size(file):
    """Bytes from the current position to the end of a real or seekable file; None for a stream."""
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        if not file.seekable():
            return None
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return None


def _aligned_buffer(name, length):
    """A writable uint8 array of `length` bytes starting on a 64-byte boundary, so every array,
    at a multiple of 64 in the file, is 64-byte aligned."""
    try:
        raw = numpy.empty(length + ALIGNMENT, numpy.uint8)
    except MemoryError:
        raise error(name, f"claims to be {length} bytes long, more than this machine can allocate; "
                           "the file is damaged or not a distrain checkpoint") from None
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + length]


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
