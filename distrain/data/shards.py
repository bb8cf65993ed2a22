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
NumPy's dtype strings, byte order included. A reader checks every entry before using it
(shard_index.py) and every file against its entry (shard_dataset.py).
"""
from __future__ import annotations

import io
import os
import shutil
import zlib
from collections.abc import Iterable, Mapping

import numpy

from ..durable import fsync_directory, remove_dead_temporaries, temporary_path
from ..errors import DTypeError, ShapeError, ShardError
from .directory_swap import swap_in
from .shard_dataset import Field, ShardDataset
from .shard_index import FIELD_NAME, FORMAT, FORMAT_VERSION, INDEX_NAME, index_text

__all__ = ["Field", "ShardDataset", "write_shards"]  # ShardDataset lives in shard_dataset.py


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
    sibling directory (`.NAME.HOST.PID.RANDOM.tmp`), which is renamed onto `path` only when
    whole. A failure or a crash never leaves a partial dataset at `path`; a failure removes
    the temporary directory. With overwrite, the new dataset replaces the old one atomically
    (directory_swap.py): at no instant is `path` missing, and the old one is then deleted.
    A temporary directory left by a killed writer is removed by the next write to the same
    path, once its writer (a process on this machine) no longer exists; one of a running
    writer, or from another machine, is left alone (NOTE [ Temporary names and dead
    writers ] in distrain/durable.py).

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
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    for suffix in ("tmp", "old"):
        remove_dead_temporaries(target, suffix)
    temporary = temporary_path(target, "tmp")
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
        _write_file(os.path.join(temporary, INDEX_NAME), [index_text(index).encode()])
        fsync_directory(temporary)
        _commit(temporary, target, overwrite)
    except BaseException:  # KeyboardInterrupt too: never leave a temporary directory from a failure
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    fsync_directory(parent)  # the rename lives in the parent: without this a power cut could forget it
    return os.fspath(path)


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
    """Put the finished dataset `temporary` at `target` in one step and delete what was there (see write_shards)."""
    _check_target(target, overwrite)  # again: something may have appeared while we wrote
    replaced = swap_in(temporary, target, aside=temporary_path(target, "old"))
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


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
        if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
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
