"""index.json, the table of contents of a shard dataset: written by write_shards, checked before it is trusted.

The format is described in shards.py. An index is read from disk, where it may be damaged,
truncated, hand-edited or forged, so `read_index` checks every entry's type and range
before anything else uses it, and any problem, however deep, is a `ShardError` naming
index.json and the entry (never a RecursionError, KeyError or TypeError from inside).
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy

from ..errors import ShardError

FORMAT = "distrain.shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
FIELD_NAME = re.compile(r"[A-Za-z0-9_-]+")
REWRITE = "write the dataset again with distrain.data.write_shards (or restore the directory from a copy)"
_MAX_INDEX_BYTES = 1 << 30  # far above any real index (a few hundred bytes per shard)
_MAX_COUNT = 2 ** 62  # sizes, counts and extents: int64 arithmetic on them cannot overflow
_MAX_DIMENSIONS = 32  # NumPy allows 64; no per-sample field needs more


def shard_error(file, problem, remedy=REWRITE):
    """The ShardError for `file`: what is wrong with it, and what to do."""
    return ShardError(f"shard dataset file {file} {problem}; {remedy}")


def index_text(index):
    """index.json's text: JSON with one line per field and per shard, for people reading it."""
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in index.items()
             if key not in ("fields", "shards")]
    for key in ("fields", "shards"):
        items = ",\n  ".join(json.dumps(item) for item in index[key])
        lines.append(f' "{key}": [\n  {items}\n ],')
    return "{\n" + "\n".join(lines)[:-1] + "\n}\n"


def read_index(path):
    """The parsed index.json of the dataset at `path`, every entry checked (see the module docstring)."""
    index_path = os.path.join(path, INDEX_NAME)
    if not os.path.isdir(path):
        raise ShardError(f"shard dataset {path} does not exist (or is not a directory); "
                         "write one with distrain.data.write_shards")
    if not os.path.isfile(index_path):
        raise shard_error(index_path, "is missing: the directory is not a shard dataset, or its writing never "
                                      "finished (index.json is written last)")
    try:
        with open(index_path, "rb") as file:
            text = file.read(_MAX_INDEX_BYTES + 1)
    except OSError as exc:
        raise shard_error(index_path, f"cannot be read ({exc.strerror})", "check its permissions") from None
    if len(text) > _MAX_INDEX_BYTES:
        raise shard_error(index_path, f"is larger than {_MAX_INDEX_BYTES} bytes, far beyond any real index",
                          "the index is damaged — " + REWRITE)
    try:
        index = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        problem = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise shard_error(index_path, f"is not valid JSON ({problem})", "the index is damaged — " + REWRITE) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise shard_error(index_path, f"is not a distrain shard index (its 'format' is not {FORMAT!r})")
    if index.get("version") != FORMAT_VERSION:
        raise shard_error(index_path, f"has format version {_short(index.get('version'))}, but this distrain reads "
                                      f"version {FORMAT_VERSION}", "upgrade distrain to read it")
    try:
        _check(index)
    except _Malformed as exc:
        raise shard_error(index_path, f"is malformed: {exc}", "the index is damaged — " + REWRITE) from None
    return index


class _Malformed(Exception):
    """What is wrong with one entry of an index."""


def _check(index):
    """Raise _Malformed naming the first entry of `index` whose type or value is wrong."""
    fields = _entry(index, "fields", list, "the index")
    if not fields:
        raise _Malformed("'fields' is empty: a dataset has at least one field")
    names = []
    per_sample_bytes = []
    for number, field in enumerate(fields):
        where = f"fields[{number}]"
        _require(isinstance(field, dict), f"{where} is {_short(field)}, not an object")
        name = _entry(field, "name", str, where)
        _require(FIELD_NAME.fullmatch(name) is not None and name not in names,
                 f"{where} has name {_short(name)}: field names are distinct and use letters, digits, '_' and '-'")
        names.append(name)
        dtype = _dtype(_entry(field, "dtype", str, where), where)
        shape = _entry(field, "shape", list, where)
        _require(len(shape) <= _MAX_DIMENSIONS and all(_is_count(extent) for extent in shape),
                 f"{where} has shape {_short(shape)}: a per-sample shape is a list of at most {_MAX_DIMENSIONS} "
                 "non-negative integers")
        per_sample_bytes.append(dtype.itemsize * math.prod(shape))
    shards = _entry(index, "shards", list, "the index")
    total = 0
    for number, shard in enumerate(shards):
        where = f"shard {number}"
        _require(isinstance(shard, dict), f"{where} is {_short(shard)}, not an object")
        count = _entry(shard, "num_samples", int, where)
        _require(_is_count(count), f"{where} has num_samples {_short(count)}")
        for name, size in zip(names, per_sample_bytes):
            _require(size * count < _MAX_COUNT, f"{where}: field {name!r} would take {size * count} bytes, an "
                                                "absurd size")
        files = _entry(shard, "files", dict, where)
        _require(sorted(files) == sorted(names), f"{where} lists files for fields {_short(sorted(files))}, "
                                                 f"not {names}")
        for name, entry in files.items():
            _check_file_entry(entry, f"{where}, field {name!r}")
        total += count
    _require(total < _MAX_COUNT, f"the shards hold {total} samples, an absurd number")
    num_samples = _entry(index, "num_samples", int, "the index")
    _require(num_samples == total, f"num_samples is {_short(num_samples)}, but the shards hold {total} samples")
    sample_type = index.get("sample_type")
    _require(sample_type in ("dict", "tuple"), f"sample_type is {_short(sample_type)}, not 'dict' or 'tuple'")


def _check_file_entry(entry, where):
    _require(isinstance(entry, dict), f"{where}: the file entry is {_short(entry)}, not an object")
    file = _entry(entry, "file", str, where)
    _require(os.path.basename(file) == file and not file.startswith(".") and "\0" not in file,
             f"{where} names file {_short(file)} outside the dataset directory")
    _require(_is_count(entry.get("nbytes")), f"{where}: file {file!r} has nbytes {_short(entry.get('nbytes'))}, "
                                             "not a byte count")
    crc = entry.get("crc32")
    _require(type(crc) is int and 0 <= crc < 2 ** 32, f"{where}: file {file!r} has crc32 {_short(crc)}, not a "
                                                       "32-bit checksum")


def _entry(mapping, key, kind, where):
    """mapping[key], which must be a `kind` (bool does not count as int)."""
    if key not in mapping:
        raise _Malformed(f"missing entry {key!r} in {where}")
    value = mapping[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Malformed(f"{where}: {key!r} is {_short(value)}, not {_KIND_NAMES[kind]}")
    return value


_KIND_NAMES = {list: "a list", dict: "an object", str: "a string", int: "an integer"}


def _dtype(text, where):
    """The NumPy dtype a field's "dtype" string names, which must be as write_shards writes them."""
    try:
        dtype = numpy.dtype(text) if len(text) <= 32 else None
    except Exception:  # numpy's dtype parser raises TypeError, ValueError, SyntaxError ... on garbage
        dtype = None
    _require(dtype is not None and dtype.str == text and not dtype.hasobject and dtype.fields is None
             and dtype.kind != "V" and dtype.itemsize > 0,
             f"{where} has dtype {_short(text)}: not a NumPy dtype string of a numeric, bool or fixed-width "
             "string type, as write_shards writes them (e.g. '<f4')")
    return dtype


def _is_count(value):
    return type(value) is int and 0 <= value < _MAX_COUNT


def _require(condition, problem):
    if not condition:
        raise _Malformed(problem)


def _short(value):
    """repr(value), cut short: a forged entry can be megabytes long, or nested hundreds deep."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply"
    return text if len(text) <= 80 else text[:77] + "..."
