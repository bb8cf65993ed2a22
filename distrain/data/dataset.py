"""Datasets: what a DataLoader reads samples from.

A map-style `Dataset` answers `len(ds)` and `ds[i]`; an `IterableDataset` only yields
samples (a stream). The helpers build datasets from others: `TensorDataset` (tensors or
arrays sharing their first dimension), `Subset`, `ConcatDataset`, `random_split`. All
follow torch.utils.data. A dataset may also offer `get_batch(indices)` returning the
already-collated batch (ShardDataset does, from memory-mapped shards): the DataLoader
then fetches a whole batch in a few array operations instead of one call per sample.
"""
from __future__ import annotations

import bisect
import math

import numpy

from ..engine.tensor import Tensor, _make


class Dataset:
    """A map-style dataset: subclass it and define `__getitem__(index)` and `__len__()`."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(self, index)")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset:
    """A stream of samples: subclass it and define `__iter__()`.

    With several loader workers every worker runs `__iter__`; use
    `distrain.data.get_worker_info()` inside it to give each worker its own share.
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__(self)")


def _as_array(value):
    if isinstance(value, Tensor):
        return value.detach().numpy() if not value.is_cuda else value.detach().cpu().numpy()
    return numpy.asarray(value)


class TensorDataset(Dataset):
    """Samples are the i-th rows of each given tensor or array (all with the same first dimension).

    Example::

        >>> ds = TensorDataset(distrain.randn(100, 3), distrain.arange(100))
        >>> x, y = ds[0]
    """

    draws_random_numbers = False  # NOTE [ Deterministic datasets ] (data/worker.py)

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tensors  # as given, like PyTorch's: `data, target = dataset.tensors; model(data)`
        self._arrays = tuple(_as_array(t) for t in tensors)  # what samples and batches are cut from (host memory)
        self._gives_tensors = tuple(isinstance(t, Tensor) for t in tensors)  # rows come back as they went in
        lengths = [len(t) for t in self._arrays]
        if len(set(lengths)) != 1:
            raise ValueError(f"TensorDataset: all tensors must have the same first dimension, got sizes {lengths}")

    def __getitem__(self, index):
        return tuple(_make(numpy.asarray(t[index])) if as_tensor else t[index]
                     for t, as_tensor in zip(self._arrays, self._gives_tensors))

    def __len__(self):
        return len(self._arrays[0])

    def get_batch(self, indices):
        """The batch of rows `indices`, one stacked array per tensor (one fancy index each)."""
        return tuple(t[indices] for t in self._arrays)

    def __getstate__(self):
        """Sent to a spawned loader worker, the values travel once (as arrays), not also as the tensors."""
        state = dict(self.__dict__)
        del state["tensors"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.tensors = tuple(_make(array) if as_tensor else array
                             for array, as_tensor in zip(self._arrays, self._gives_tensors))


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = list(indices)
        self._index_array = numpy.asarray(self.indices, dtype=numpy.int64)  # for get_batch, once, not per batch

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)

    def __getattr__(self, name):
        """get_batch, prepare_for_workers and draws_random_numbers pass through to the dataset when it has them."""
        dataset = self.__dict__.get("dataset")
        if name == "get_batch" and hasattr(dataset, "get_batch"):
            return lambda indices: dataset.get_batch(self.__dict__["_index_array"][numpy.asarray(indices)])
        if name == "prepare_for_workers" and hasattr(dataset, "prepare_for_workers"):
            return dataset.prepare_for_workers
        if name == "draws_random_numbers" and hasattr(dataset, "draws_random_numbers"):
            return dataset.draws_random_numbers
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")


class ConcatDataset(Dataset):
    """Datasets one after another: index i goes to the dataset whose range holds it."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        for dataset in self.datasets:
            if isinstance(dataset, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset; chain the streams instead")
        self.cumulative_sizes = []
        total = 0
        for dataset in self.datasets:
            total += len(dataset)
            self.cumulative_sizes.append(total)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"index {index} is out of range for a dataset of length {len(self)}")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        if which >= len(self.datasets):
            raise IndexError(f"index {index} is out of range for a dataset of length {len(self)}")
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


def random_split(dataset, lengths, generator=None):
    """Split `dataset` into non-overlapping random Subsets of the given lengths (or fractions summing to 1).

    `generator` is a distrain.Generator (default: the global CPU one, so distrain.manual_seed
    makes the split reproducible).
    """
    from ..engine.random import default_generator

    total = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:  # fractions (PyTorch's rule)
        counts = [int(math.floor(total * fraction)) for fraction in lengths]
        for i in range(total - sum(counts)):  # spread the remainder round-robin, as PyTorch does
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != total:
        raise ValueError(f"random_split: the lengths {lengths} sum to {sum(lengths)}, not the dataset's length {total}")
    order = (generator or default_generator()).permutation(total).tolist()
    subsets, start = [], 0
    for length in lengths:
        subsets.append(Subset(dataset, order[start:start + length]))
        start += length
    return subsets
