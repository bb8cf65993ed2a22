"""ShardDataset: the samples of a shard dataset (shards.py describes the format), read through memory maps.

Every file is untrusted until checked: index.json by shard_index.read_index, each shard
file's size, .npy header and CRC-32 against the index when the shard is first opened
(or all at construction with verify="full"), so damage is a ShardError naming the file.
"""
from __future__ import annotations

import bisect
import collections
import operator
import os
import zlib
from collections.abc import Mapping

import numpy

from .dataset import Dataset
from .shard_index import REWRITE, read_index, shard_error

VERIFY_MODES = ("lazy", "full", "none")
_READ_CHUNK = 1 << 22  # bytes per read while computing a file's checksum

Field = collections.namedtuple("Field", "name dtype shape")
Field.__doc__ = "One field of every sample: its name, NumPy dtype and per-sample shape."


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
        index = read_index(self.path)
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

    @property
    def draws_random_numbers(self) -> bool:
        """Only a transform can (NOTE [ Deterministic datasets ]); one may say it does not with the same attribute."""
        function = self.transform or self.batch_transform
        return function is not None and getattr(function, "draws_random_numbers", True)

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
            raise shard_error(file, "is missing", "the dataset is incomplete — " + REWRITE)
        try:
            if self.verify != "none":
                size = os.path.getsize(file)
                if size != entry["nbytes"]:
                    problem = "is truncated" if size < entry["nbytes"] else "is longer than it should be"
                    raise shard_error(file, f"{problem}: index.json says {entry['nbytes']} bytes, the file has "
                                            f"{size}", REWRITE)
            dtype, shape = _npy_header(file)
            expected = (self.shard_sizes[shard],) + field.shape
            if dtype != field.dtype or shape != expected:  # checked before mapping: a forged shape maps nothing
                raise shard_error(file, f"holds a {dtype} array of shape {shape}, but index.json says "
                                        f"{field.dtype} {expected} (shard {shard}: {expected[0]} samples of field "
                                        f"'{field.name}', shape {field.shape})",
                                  "the index and the files disagree; was either edited or copied from another "
                                  "dataset? " + REWRITE)
            array = numpy.load(file, mmap_mode="r", allow_pickle=False)
            if check_sum:
                found = _crc32_of(file)
                if found != entry["crc32"]:
                    raise shard_error(file, f"is damaged: its CRC-32 is {found}, index.json says {entry['crc32']}",
                                      REWRITE)
        except (ValueError, OSError) as exc:  # e.g. data shorter than the header says; no permission
            raise shard_error(file, f"cannot be read as a .npy file ({type(exc).__name__}: {exc})", REWRITE) from None
        return numpy.asarray(array)  # a plain ndarray view of the map: its rows index as ndarrays, not memmaps


def _npy_header(file):
    """(dtype, shape) from a .npy file's header, or ShardError: the header is untrusted input."""
    try:
        with open(file, "rb") as handle:
            version = numpy.lib.format.read_magic(handle)
            read = numpy.lib.format.read_array_header_1_0 if version == (1, 0) else \
                numpy.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
    except Exception as exc:  # numpy's header parser raises ValueError, TokenError, OverflowError, ... on garbage
        raise shard_error(file, f"cannot be read as a .npy file ({type(exc).__name__}: {exc})", REWRITE) from None
    return dtype, shape


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
