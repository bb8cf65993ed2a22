"""Reading PyTorch's `.pt`/`.pth` files, both layouts `torch.save` writes, without PyTorch and without
running code (the pickle goes through restricted_unpickler.py; tensors are rebuilt in torch_tensors.py).

The zip layout (PyTorch >= 1.6)::

    <archive>/data.pkl      the pickled object; each storage a persistent id ("storage", type, key, location, numel)
    <archive>/data/<key>    each storage's raw bytes, little-endian
    <archive>/byteorder     "little" (absent in files older than PyTorch 1.10: little)
    <archive>/version, .format_version, .storage_alignment, .data/serialization_id

The legacy layout (`_use_new_zipfile_serialization=False`, and PyTorch < 1.6), five things in a row::

    pickle of the magic number 0x1950a86a20f9469cfc6c, pickle of the protocol version 1001,
    pickle of the system info {"little_endian": ..., "type_sizes": ...},
    the pickled object (persistent ids as above, plus a view field), a pickle of the storage keys,
    then for each key in that order: its element count (int64) and its raw bytes.

In the legacy layout the storages follow the pickle that describes them, so it is read twice: once
to learn each storage's dtype (and so where the next storage starts), once to build the tensors.
"""
from __future__ import annotations

import struct
import zipfile
import zlib

from .format import error
from .reader import _aligned_buffer, _read_into, _remaining_size
from .restricted_unpickler import restricted_load
from .torch_tensors import REBUILD_FUNCTIONS, TORCH_GLOBALS, UNSUPPORTED, Storages

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC_NUMBER.to_bytes(10, "little")  # how protocol 2 pickles that number


def is_torch_file(head: bytes) -> bool:
    """Whether a file starting with `head` (at least 14 bytes) was written by torch.save."""
    return head.startswith((ZIP_MAGIC, LEGACY_MAGIC))


def load_torch(file, name, placement):
    """The object `torch.save` wrote to `file` (a seekable binary file at its start), tensors as distrain tensors."""
    head = file.read(len(LEGACY_MAGIC))
    file.seek(-len(head), 1)
    if head.startswith(ZIP_MAGIC):
        return _load_zip(file, name, placement)
    return _load_legacy(file, name, placement)


def _load_zip(file, name, placement):
    size = _remaining_size(file)
    try:
        with zipfile.ZipFile(file) as archive:
            records = {info.filename: info for info in archive.infolist()}
            pickles = [path for path in records if path.endswith("/data.pkl") and path.count("/") == 1]
            if len(pickles) != 1:
                raise error(name, "is a zip archive but not a PyTorch file: it has no single <archive>/data.pkl "
                                  f"record (it has {sorted(records)[:5]!r:.200})")
            prefix = pickles[0][:-len("data.pkl")]
            if f"{prefix}constants.pkl" in records or any(path.startswith(f"{prefix}code/") for path in records):
                raise error(name, "is a TorchScript archive (torch.jit.save): it holds code, not only weights. "
                                  "Load it in PyTorch and save model.state_dict() with torch.save instead")
            def read_record(path):
                _checked_size(name, records[path], size)
                return archive.read(path)

            if f"{prefix}byteorder" in records and read_record(f"{prefix}byteorder") != b"little":
                raise error(name, "was saved on a big-endian machine; distrain reads little-endian PyTorch files")

            def read_bytes(key, nbytes):
                info = records.get(f"{prefix}data/{key}")
                if info is None:
                    raise error(name, f"lacks the record {prefix}data/{key} of storage {key!r}; it is damaged")
                if info.file_size != nbytes:
                    raise error(name, f"has storage {key!r} of {info.file_size} bytes where its tensors need {nbytes}")
                buffer = _aligned_buffer(name, _checked_size(name, info, size))
                with archive.open(info) as record:
                    if _read_into(record, memoryview(buffer)) != nbytes:
                        raise error(name, f"is truncated inside storage {key!r}")
                return buffer

            storages = Storages(name, read_bytes, placement)
            return restricted_load(read_record(pickles[0]), name, TORCH_GLOBALS, storages.reference, UNSUPPORTED)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, ValueError,
            OverflowError, struct.error) as exc:  # what zipfile raises on a damaged directory
        raise error(name, f"is a damaged zip archive ({type(exc).__name__}: {exc})") from None


def _checked_size(name, info, file_size):
    """The size of a zip record, once its directory entry is seen to fit the file: a damaged or forged
    directory must not make the reader allocate more than the file could hold (a stored record is its
    bytes; a compressed one is bounded by zlib's ratio, 1032:1)."""
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise error(name, f"has a zip record {info.filename!r:.100} that is encrypted or compressed with method "
                          f"{info.compress_type}; torch.save stores records as they are: it is damaged")
    stored = info.compress_type == zipfile.ZIP_STORED
    if info.compress_size > file_size or info.file_size > (1 if stored else 1032) * info.compress_size + 64:
        raise error(name, f"has a malformed zip record {info.filename!r:.100}: {info.file_size} bytes from "
                          f"{info.compress_size} stored, in a file of {file_size}")
    return info.file_size


def _load_legacy(file, name, placement):
    if restricted_load(file, name) != LEGACY_MAGIC_NUMBER:
        raise error(name, "is not a PyTorch file: it does not start with PyTorch's magic number")
    protocol = restricted_load(file, name)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise error(name, f"uses PyTorch's legacy protocol version {protocol!r:.20}; distrain reads version 1001")
    system = restricted_load(file, name)
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise error(name, "was saved on a big-endian machine; distrain reads little-endian PyTorch files")
    pickle_start = file.tell()

    # First pass: which storages exist, and their dtypes; tensors are not built.
    dry_run = Storages(name, None, placement)
    restricted_load(file, name, {**TORCH_GLOBALS, **dict.fromkeys(REBUILD_FUNCTIONS, _discard)},
                    dry_run.reference, UNSUPPORTED)
    keys = restricted_load(file, name)
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)
            and sorted(keys) == sorted(dry_run.declared)):
        raise error(name, "lists storages that its pickle does not describe; it is damaged")
    raw = {}
    for key in keys:
        dtype_name, numel = dry_run.declared[key]
        count = file.read(8)
        if len(count) != 8 or struct.unpack("<q", count)[0] != numel:
            raise error(name, f"has a storage header for {key!r} that does not match its {numel} elements")
        nbytes = numel * Storages.itemsize(dtype_name)
        if nbytes > _remaining_size(file):
            raise error(name, f"is truncated: storage {key!r} needs {nbytes} bytes, more than the file has left")
        raw[key] = buffer = _aligned_buffer(name, nbytes)
        if _read_into(file, memoryview(buffer)) != nbytes:
            raise error(name, f"is truncated inside storage {key!r}")
    end = file.tell()

    # Second pass: the object, its tensors viewing the storages just read.
    file.seek(pickle_start)
    storages = Storages(name, lambda key, nbytes: raw[key], placement)
    loaded = restricted_load(file, name, TORCH_GLOBALS, storages.reference, UNSUPPORTED)
    file.seek(end)
    return loaded


def _discard(*args):
    return None
