"""Datasets on disk as shards of plain .npy files: `write_shards` writes one, `ShardDataset` reads it.

A dataset is a directory: one standard `.npy` file per field per shard, and `index.json`, the
table of contents. Any NumPy user can `numpy.load` a shard file; distrain memory-maps them, so
loader workers share the operating system's page cache and a sample is read without a copy.

Example::

    >>> import numpy as np
    >>> from distrain.data import ShardDataset, write_shards
    >>> images, labels = np.zeros((1000, 1, 8, 8), np.float32), np.arange(1000)
    >>> path = write_shards("digits", {"image": images, "label": labels}, samples_per_shard=256)
    >>> ds = ShardDataset(path)
    >>> len(ds), ds[300]["label"], ds.get_batch([5, 999, 0])["image"].shape
    (1000, 300, (3, 1, 8, 8))

Directory layout, format version 1
----------------------------------
::

    index.json                 written last: its presence is what makes the dataset whole
    shard-00000.image.npy      shard 0, field "image": shape (samples in shard, *per-sample shape)
    shard-00000.label.npy
    shard-00001.image.npy ...

index.json holds::

    {"format": "distrain.shards", "version": 1,
     "sample_type": "dict" | "tuple",        what ds[i] returns (written from a dict, or not)
     "num_samples": 1000, "samples_per_shard": 256,
     "fields": [{"name": "image", "dtype": "<f4", "shape": [1, 8, 8]},    per sample, in order
                {"name": "label", "dtype": "<i8", "shape": []}],
     "shards": [{"num_samples": 256,
                 "files": {"image": {"file": "shard-00000.image.npy", "nbytes": 65664, "crc32": 123},
                           "label": {...}}}, ...]}

`nbytes` is the size of the whole .npy file and `crc32` (zlib) covers all of its bytes.
Field names are letters, digits, "_" and "-" (they become part of file names); dtypes are
NumPy's dtype strings, byte order included.
"""
from __future__ import annotations

import bisect
import collections
import io
import json
import operator
import os
import re
import secrets
import shutil
import zlib
from collections.abc import Iterable, Mapping

import numpy

from ..durable import fsync_directory
from ..errors import DTypeError, ShapeError, ShardError
from .dataset import Dataset

FORMAT = "distrain.shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
VERIFY_MODES = ("lazy", "full", "none")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_-]+")
_READ_CHUNK = 1 << 22  # bytes per read while computing a file's checksum
_REWRITE = "write the dataset again with distrain.data.write_shards (or restore the directory from a copy)"

Field = collections.namedtuple("Field", "name dtype shape")
Field.__doc__ = "One field of every sample: its name, NumPy dtype and per-sample shape."


# -- writing -------------------------------------------------------------------------------------------

def write_shards(path, data, samples_per_shard=1024, overwrite=False):
    """Write `data` as a shard dataset in the directory `path` and return `path`.

    Args:
        path: the dataset directory to create (missing parent directories are created).
        data: the samples, in one of two forms:

            * columns: a dict {field name: array}, or a tuple or list of arrays (fields named
              "0", "1", ...), each array with the samples along its first axis;
            * a stream: any iterable of per-sample dicts or tuples (a generator, say), whose
              values are arrays or scalars. Only one shard's samples are held in memory, so
              the dataset need not fit. The first sample sets the fields, dtypes and shapes:
              yield `np.float32(x)`, not `x`, to store float32.

            Samples written from dicts are read back as dicts, others as tuples.
        samples_per_shard: samples per shard file (the last shard holds the remainder).
        overwrite: replace an existing dataset at `path`. Without it an existing non-empty
            directory is refused; with it, only a directory holding an index.json (a dataset)
            is replaced, never some other directory.

    Nothing is lost: the shards and then index.json are written and fsynced into a hidden
    sibling directory (`.NAME.PID.RANDOM.tmp`), which is renamed onto `path` only when whole.
    A failure or a crash never leaves a partial dataset at `path`; a failure removes the
    temporary directory (a killed process leaves it behind, safe to delete). With overwrite,
    the old dataset is first renamed aside (`.NAME.PID.RANDOM.old`) and deleted after the new
    one is in place.

    Raises:
        ShardError: no samples; fields that change between samples; a bad field name;
            an existing directory in the way.
        ShapeError: fields with different numbers of samples, or a per-sample shape that
            changes between samples.
        DTypeError: object or structured dtypes (not memory-mappable), or a dtype that
            changes between samples.
    """
    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be a positive int, got {samples_per_shard!r}")
    target = os.path.abspath(os.fspath(path))
    _check_target(target, overwrite)  # before writing anything: fail in a second, not after an hour
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    temporary = os.path.join(parent, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.mkdir(temporary)
    try:
        shards, layout = [], None
        for layout, columns in _chunks(data, samples_per_shard):
            shards.append(_write_shard(temporary, len(shards), layout[1], columns))
        if not shards:
            raise ShardError(f"cannot write shard dataset {target}: the input has no samples")
        sample_type, names = layout
        fields = [{"name": name, "dtype": column.dtype.str, "shape": list(column.shape[1:])}
                  for name, column in zip(names, columns)]
        index = {"format": FORMAT, "version": FORMAT_VERSION, "sample_type": sample_type,
                 "num_samples": sum(shard["num_samples"] for shard in shards),
                 "samples_per_shard": samples_per_shard, "fields": fields, "shards": shards}
        _write_file(os.path.join(temporary, INDEX_NAME), [_index_text(index).encode()])
        fsync_directory(temporary)
        _commit(temporary, target, overwrite)
    except BaseException:  # KeyboardInterrupt too: never leave a temporary directory from a failure
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    fsync_directory(parent)  # the rename lives in the parent: without this a power cut could forget it
    return os.fspath(path)


def _index_text(index):
    """index.json's text: JSON with one line per field and per shard, for people reading it."""
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in index.items()
             if key not in ("fields", "shards")]
    for key in ("fields", "shards"):
        items = ",\n  ".join(json.dumps(item) for item in index[key])
        lines.append(f' "{key}": [\n  {items}\n ],')
    return "{\n" + "\n".join(lines)[:-1] + "\n}\n"


def _check_target(target, overwrite):
    """Raise ShardError unless `target` is free, or is a dataset and `overwrite` allows replacing it."""
    if not os.path.lexists(target) or (os.path.isdir(target) and not os.path.islink(target)
                                        and not os.listdir(target)):
        return
    is_dataset = os.path.isdir(target) and not os.path.islink(target) and os.path.isfile(os.path.join(target, INDEX_NAME))
    if not is_dataset:
        raise ShardError(f"cannot write shard dataset {target}: the path exists and is not a shard dataset "
                         "(a file, a link, or a non-empty directory without index.json); it is left untouched — "
                         "choose another path or remove it yourself")
    if not overwrite:
        raise ShardError(f"cannot write shard dataset {target}: a dataset already exists there; "
                         "pass overwrite=True to replace it, or choose another path")


def _commit(temporary, target, overwrite):
    """Move the finished dataset `temporary` onto `target` (see write_shards)."""
    _check_target(target, overwrite)  # again: something may have appeared while we wrote
    if not os.path.lexists(target):
        os.rename(temporary, target)
    elif not os.listdir(target):  # an empty directory, e.g. made for us by the caller
        os.rmdir(target)
        os.rename(temporary, target)
    else:
        parent, name = os.path.split(target)
        old = os.path.join(parent, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.old")
        os.rename(target, old)
        os.rename(temporary, target)  # a crash just before this leaves both datasets whole, under hidden names
        shutil.rmtree(old, ignore_errors=True)


def _chunks(data, samples_per_shard):
    """Yield ((sample_type, field names), columns) per shard: columns are arrays of that shard's samples."""
    if isinstance(data, Mapping):
        yield from _column_chunks("dict", list(data), list(data.values()), samples_per_shard)
    elif isinstance(data, (tuple, list)) and data and all(isinstance(item, numpy.ndarray) for item in data):
        yield from _column_chunks("tuple", [str(i) for i in range(len(data))], list(data), samples_per_shard)
    elif isinstance(data, numpy.ndarray):
        raise TypeError("write_shards: pass a single array as {'name': array} or (array,), so its field has a name")
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        yield from _stream_chunks(data, samples_per_shard)
    else:
        raise TypeError(f"write_shards: data must be a dict or tuple of arrays, or an iterable of per-sample dicts "
                        f"or tuples, got {type(data).__name__}")


def _column_chunks(sample_type, names, columns, samples_per_shard):
    _check_names(names)
    columns = [numpy.asarray(column) for column in columns]
    for name, column in zip(names, columns):
        if column.ndim == 0:
            raise ShapeError(f"write_shards: field '{name}' is a 0-d array; columns need the samples along a "
                             "first axis (use a stream of per-sample values for one sample at a time)")
        _check_dtype(column.dtype, f"field '{name}'")
    lengths = {name: len(column) for name, column in zip(names, columns)}
    if len(set(lengths.values())) != 1:
        raise ShapeError(f"write_shards: every field needs the same number of samples (first axis), got {lengths}")
    for start in range(0, len(columns[0]), samples_per_shard):
        yield (sample_type, names), [column[start:start + samples_per_shard] for column in columns]


def _stream_chunks(samples, samples_per_shard):
    buffers, filled = None, 0
    for position, sample in enumerate(samples):
        if isinstance(sample, Mapping):
            values, sample_names = list(sample.values()), list(sample)
        elif isinstance(sample, (tuple, list)):
            values, sample_names = list(sample), [str(i) for i in range(len(sample))]
        else:
            raise TypeError(f"write_shards: sample {position} is a {type(sample).__name__}; a stream's samples must "
                            "be dicts or tuples (wrap a single value as (value,))")
        arrays = []
        for name, value in zip(sample_names, values):
            try:
                arrays.append(numpy.asarray(value))
            except ValueError as exc:  # ragged nested lists
                raise ShapeError(f"write_shards: sample {position}, field '{name}' cannot be made an array: {exc}") from None
        if buffers is None:  # the first sample sets the layout; one shard's worth of buffers is all we hold
            _check_names(sample_names)
            layout = ("dict" if isinstance(sample, Mapping) else "tuple", sample_names)
            for name, array in zip(sample_names, arrays):
                _check_dtype(array.dtype, f"field '{name}'")
            buffers = [numpy.empty((samples_per_shard,) + array.shape, array.dtype) for array in arrays]
        elif sample_names != layout[1]:
            raise ShardError(f"write_shards: sample {position} has fields {sample_names}, but sample 0 had "
                             f"{layout[1]}; every sample needs the same fields in the same order")
        for name, array, buffer in zip(sample_names, arrays, buffers):
            if array.shape != buffer.shape[1:]:
                raise ShapeError(f"write_shards: sample {position}, field '{name}' has shape {array.shape}, but "
                                 f"sample 0 had {buffer.shape[1:]}; every sample's field needs the same shape")
            if array.dtype != buffer.dtype:
                raise DTypeError(f"write_shards: sample {position}, field '{name}' has dtype {array.dtype}, but "
                                 f"sample 0 had {buffer.dtype}; give every sample the same dtype (e.g. "
                                 f"numpy.{buffer.dtype.name}(value))")
            buffer[filled] = array
        filled += 1
        if filled == samples_per_shard:
            yield layout, buffers  # written before the generator resumes, so the buffers can be reused
            filled = 0
    if filled:
        yield layout, [buffer[:filled] for buffer in buffers]


def _check_names(names):
    for name in names:
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise ShardError(f"write_shards: field name {name!r} is not allowed; field names become part of file "
                             "names, so use letters, digits, '_' and '-' only")
    if not names:
        raise ShardError("write_shards: the samples have no fields")


def _check_dtype(dtype, what):
    if dtype.hasobject or dtype.fields is not None or dtype.kind == "V":
        raise DTypeError(f"write_shards: {what} has dtype {dtype}, which cannot be stored in a memory-mappable .npy "
                         "file; convert it to a numeric, bool or fixed-width string dtype")


def _write_shard(directory, number, names, columns):
    """Write one shard's .npy files and return its index entry."""
    files = {}
    for name, column in zip(names, columns):
        file_name = f"shard-{number:05d}.{name}.npy"
        column = numpy.ascontiguousarray(column)
        header = io.BytesIO()
        try:
            numpy.lib.format.write_array_header_1_0(header, numpy.lib.format.header_data_from_array_1_0(column))
        except ValueError:  # a header longer than version 1.0 allows
            header = io.BytesIO()
            numpy.lib.format.write_array_header_2_0(header, numpy.lib.format.header_data_from_array_1_0(column))
        chunks = [header.getvalue(), column.reshape(-1).view(numpy.uint8)]
        files[name] = {"file": file_name, "nbytes": sum(len(chunk) for chunk in chunks),
                       "crc32": zlib.crc32(chunks[1], zlib.crc32(chunks[0]))}
        _write_file(os.path.join(directory, file_name), chunks)
    return {"num_samples": len(columns[0]), "files": files}


def _write_file(path, chunks):
    with open(path, "xb") as file:
        file.writelines(chunks)
        file.flush()
        os.fsync(file.fileno())


# -- reading -------------------------------------------------------------------------------------------

class ShardDataset(Dataset):
    """The samples of a dataset written by `write_shards`, read through memory maps.

    `ds[i]` is sample i: a dict {field: value} if the dataset was written from dicts, else a
    tuple of values in field order. Values are read-only views into the memory-mapped shard
    files (no copy; copy one before modifying it in place); a field with per-sample shape ()
    comes back as a NumPy scalar, as indexing an array gives. `transform(sample)`, if given,
    is applied to each sample. Indices behave like a list's: negative ones count from the
    end; others out of range raise IndexError.

    `get_batch(indices)` is the fast path the DataLoader uses: the samples' fields stacked
    into new arrays (a dict or a tuple, as for one sample), one fancy index per shard and field.

    Shard files are opened the first time a sample in them is read, in each process: the
    object pickles without its memory maps (cheap to send to loader workers) and a forked
    child maps the files afresh.

    Args:
        path: the dataset directory.
        transform: a function applied to each sample (picklable, to use loader workers).
        batch_transform: instead of `transform`, a function applied to each stacked batch
            that `get_batch` (the DataLoader's path) returns, e.g. normalising all images in
            one vectorised pass rather than one Python call per sample; `ds[i]` applies it
            to a batch of one.
        verify: how much to check the files against index.json:

            ======  ==============================================================================
            "full"  at construction, every shard file's size, .npy header and CRC-32: reads the
                    whole dataset once, before the first sample.
            "lazy"  (default) when a shard is first opened: its files' sizes and headers (a stat
                    and a few hundred bytes), and, once per shard, the CRC-32 of the files' bytes
                    (one sequential read of the shard, then served from the page cache). A
                    dataset pickled after a shard was checked does not check it again.
            "none"  no size or checksum checks; a file must exist and its header (which NumPy
                    reads anyway to map it) must match the index, or samples would be wrong.
            ======  ==============================================================================

    Raises:
        ShardError: the directory has no readable index.json, or a shard file is missing,
            truncated, damaged or disagrees with the index; the message names the file.
    """

    def __init__(self, path, transform=None, verify="lazy", batch_transform=None):
        if verify not in VERIFY_MODES:
            raise ValueError(f"ShardDataset: verify must be one of {VERIFY_MODES}, got {verify!r}")
        for name, function in (("transform", transform), ("batch_transform", batch_transform)):
            if function is not None and not callable(function):
                raise TypeError(f"ShardDataset: {name} must be callable, got {type(function).__name__}")
        if transform is not None and batch_transform is not None:
            raise ValueError("ShardDataset: give transform (per sample) or batch_transform (per batch), not both")
        self.path = os.fspath(path)
        self.transform = transform
        self.batch_transform = batch_transform
        self.verify = verify
        index = _read_index(self.path)
        self.fields = tuple(Field(field["name"], numpy.dtype(field["dtype"]), tuple(field["shape"]))
                            for field in index["fields"])
        self.shard_sizes = tuple(shard["num_samples"] for shard in index["shards"])
        self._returns_dict = index["sample_type"] == "dict"
        self._files = [[shard["files"][field.name] for field in self.fields] for shard in index["shards"]]
        self._ends = numpy.cumsum(self.shard_sizes, dtype=numpy.int64)  # shard k holds [ends[k-1], ends[k])
        self._ends_list = self._ends.tolist()
        self._verified = set()  # shards whose checksums passed (travels with pickling)
        self._opened, self._pid = [None] * len(self._files), os.getpid()
        if verify == "full":
            for shard in range(len(self._files)):
                self._shard_arrays(shard)

    def __len__(self):
        return self._ends_list[-1] if self._ends_list else 0

    def __getitem__(self, index):
        try:
            index = _position(operator.index(index), len(self))
        except TypeError:
            raise TypeError(f"ShardDataset indices must be integers, got {type(index).__name__}; "
                            "use get_batch(indices) for several samples") from None
        if self.batch_transform is not None:  # a batch of one, transformed, unstacked
            batch = self.get_batch([index])
            return self._pack(value[0] for value in (batch.values() if self._returns_dict else batch))
        shard = bisect.bisect_right(self._ends_list, index)
        local = index - (self._ends_list[shard - 1] if shard else 0)
        sample = self._pack(array[local] for array in self._shard_arrays(shard))
        return sample if self.transform is None else self.transform(sample)

    def get_batch(self, indices):
        """The samples at `indices` (a list or 1-d array of ints), each field stacked along a new first axis.

        Order follows `indices`; repeats and negative indices are allowed. With a transform,
        each sample is fetched and transformed on its own and the results are stacked (the
        slow path: the fast one reads each shard's rows with one fancy index per field).
        """
        positions = numpy.asarray(indices)
        if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
            raise TypeError(f"ShardDataset.get_batch: indices must be a 1-d list or array of ints, got "
                            f"{positions.dtype} array of shape {positions.shape}")
        positions = positions.astype(numpy.int64)
        outside = (positions < -len(self)) | (positions >= len(self))
        if outside.any():
            _position(int(positions[outside][0]), len(self))  # raises the IndexError
        positions = numpy.where(positions < 0, positions + len(self), positions)
        if self.transform is not None:
            if not positions.size:
                raise ValueError("ShardDataset.get_batch: no indices; with a transform an empty batch has no shape")
            return _stack([self[position] for position in positions.tolist()])
        shard_of = numpy.searchsorted(self._ends, positions, side="right")
        order = numpy.argsort(shard_of, kind="stable")  # group by shard, keeping the given order within each
        groups = numpy.split(order, numpy.flatnonzero(numpy.diff(shard_of[order])) + 1)
        batch = [numpy.empty((len(positions),) + field.shape, field.dtype) for field in self.fields]
        for group in groups:
            if not group.size:
                continue
            shard = int(shard_of[group[0]])
            local = positions[group] - (self._ends_list[shard - 1] if shard else 0)
            for out, array in zip(batch, self._shard_arrays(shard)):
                out[group] = array[local]
        batch = self._pack(batch)
        return batch if self.batch_transform is None else self.batch_transform(batch)

    def prepare_for_workers(self):
        """Check every shard now (verify="lazy"), once, in the process that starts loader workers.

        Workers are forked from it and inherit what was checked; otherwise every worker of
        every epoch would read and checksum the shards it touches again.
        """
        if self.verify == "lazy":
            for shard in range(len(self._files)):
                if shard not in self._verified:
                    self._shard_arrays(shard)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_opened"] = None  # memory maps are not sent: the receiving process opens its own
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._opened, self._pid = [None] * len(self._files), os.getpid()

    def __repr__(self):
        fields = "; ".join(f"{field.name} {field.dtype} {field.shape}" for field in self.fields)
        return (f"ShardDataset {self.path}\n    samples: {len(self)} in {len(self.shard_sizes)} shards of up to "
                f"{max(self.shard_sizes, default=0)}\n"
                f"    fields: {fields}\n    returns: {'dict' if self._returns_dict else 'tuple'}, "
                f"verify: {self.verify}")

    def _pack(self, values):
        if self._returns_dict:
            return {field.name: value for field, value in zip(self.fields, values)}
        return tuple(values)

    def _shard_arrays(self, shard):
        """The memory-mapped arrays of `shard`, one per field, opened (and checked) on first use."""
        if self._pid != os.getpid():  # a forked child: map the files afresh rather than share the parent's maps
            self._opened, self._pid = [None] * len(self._files), os.getpid()
        arrays = self._opened[shard]
        if arrays is None:
            check_sum = self.verify != "none" and shard not in self._verified
            arrays = [self._open(shard, field, entry, check_sum) for field, entry in zip(self.fields, self._files[shard])]
            if check_sum:
                self._verified.add(shard)
            self._opened[shard] = arrays
        return arrays

    def _open(self, shard, field, entry, check_sum):
        file = os.path.join(self.path, entry["file"])
        if not os.path.isfile(file):
            raise _error(file, "is missing", "the dataset is incomplete — " + _REWRITE)
        if self.verify != "none":
            size = os.path.getsize(file)
            if size != entry["nbytes"]:
                problem = "is truncated" if size < entry["nbytes"] else "is longer than it should be"
                raise _error(file, f"{problem}: index.json says {entry['nbytes']} bytes, the file has {size}",
                             _REWRITE)
        try:
            array = numpy.load(file, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _error(file, f"cannot be read as a .npy file ({type(exc).__name__}: {exc})", _REWRITE) from None
        expected = (self.shard_sizes[shard],) + field.shape
        if array.dtype != field.dtype or array.shape != expected:
            raise _error(file, f"holds a {array.dtype} array of shape {array.shape}, but index.json says "
                               f"{field.dtype} {expected} (shard {shard}: {expected[0]} samples of field "
                               f"'{field.name}', shape {field.shape})",
                         "the index and the files disagree; was either edited or copied from another dataset? "
                         + _REWRITE)
        if check_sum:
            found = _crc32_of(file)
            if found != entry["crc32"]:
                raise _error(file, f"is damaged: its CRC-32 is {found}, index.json says {entry['crc32']}", _REWRITE)
        return numpy.asarray(array)  # a plain ndarray view of the map: its rows index as ndarrays, not memmaps


def _read_index(path):
    """The parsed, checked index.json of the dataset at `path`."""
    index_path = os.path.join(path, INDEX_NAME)
    if not os.path.isdir(path):
        raise ShardError(f"shard dataset {path} does not exist (or is not a directory); "
                         "write one with distrain.data.write_shards")
    if not os.path.isfile(index_path):
        raise _error(index_path, "is missing: the directory is not a shard dataset, or its writing never finished "
                                 "(index.json is written last)", _REWRITE)
    try:
        with open(index_path, "rb") as file:
            index = json.loads(file.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _error(index_path, f"is not valid JSON ({exc})", "the index is damaged — " + _REWRITE) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise _error(index_path, f"is not a distrain shard index (its 'format' is not {FORMAT!r})", _REWRITE)
    if index.get("version") != FORMAT_VERSION:
        raise _error(index_path, f"has format version {index.get('version')!r}, but this distrain reads version "
                                 f"{FORMAT_VERSION}", "upgrade distrain to read it")
    try:
        fields, shards = index["fields"], index["shards"]
        names = [field["name"] for field in fields]
        for field in fields:
            numpy.dtype(field["dtype"])
            if not all(isinstance(extent, int) and extent >= 0 for extent in field["shape"]):
                raise ValueError(f"field {field['name']!r} has shape {field['shape']!r}")
        for number, shard in enumerate(shards):
            if not isinstance(shard["num_samples"], int) or shard["num_samples"] < 0:
                raise ValueError(f"shard {number} has num_samples {shard['num_samples']!r}")
            if sorted(shard["files"]) != sorted(names):
                raise ValueError(f"shard {number} lists files for fields {sorted(shard['files'])}, not {names}")
            for entry in shard["files"].values():
                if os.path.basename(entry["file"]) != entry["file"] or entry["file"].startswith("."):
                    raise ValueError(f"shard {number} names file {entry['file']!r} outside the dataset directory")
                if not isinstance(entry["nbytes"], int) or not isinstance(entry["crc32"], int):
                    raise ValueError(f"shard {number}: file {entry['file']!r} has no integer nbytes and crc32")
        total = sum(shard["num_samples"] for shard in shards)
        if total != index["num_samples"]:
            raise ValueError(f"num_samples is {index['num_samples']!r}, but the shards hold {total} samples")
        if index["sample_type"] not in ("dict", "tuple") or not names:
            raise ValueError(f"sample_type {index['sample_type']!r} or fields {names} are not usable")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise _error(index_path, f"is malformed: {problem}", "the index is damaged — " + _REWRITE) from None
    return index


def _crc32_of(file):
    crc, buffer = 0, bytearray(_READ_CHUNK)
    with open(file, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            crc = zlib.crc32(memoryview(buffer)[:count], crc)
    return crc


def _position(index, length):
    """`index` made non-negative as a list would, or IndexError naming the length."""
    if not -length <= index < length:
        raise IndexError(f"index {index} is out of range for a ShardDataset of {length} samples")
    return index + length if index < 0 else index


def _stack(samples):
    """Transformed samples stacked field by field (dicts, tuples and lists are followed into)."""
    first = samples[0]
    if isinstance(first, Mapping):
        return {key: _stack([sample[key] for sample in samples]) for key in first}
    if isinstance(first, (tuple, list)):
        return tuple(_stack(list(column)) for column in zip(*samples))
    return numpy.stack([numpy.asarray(sample) for sample in samples])


def _error(file, problem, remedy):
    return ShardError(f"shard dataset file {file} {problem}; {remedy}")
