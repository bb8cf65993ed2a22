"""Collation: a list of samples -> one batch, and batches <-> flat lists of arrays.

`default_collate` stacks what it can (like torch.utils.data.default_collate): arrays and
tensors along a new first axis, Python ints/floats/bools into int64/float64/bool arrays,
and it recurses into dicts, tuples, lists and namedtuples; strings stay lists. Its
result holds distrain Tensors.

Worker processes hand batches over as arrays in shared memory, so a batch is split into
its arrays and a "skeleton" (everything else, with `ArrayRef` placeholders) by
`split_arrays`, and put back together by `join_arrays`.
"""
from __future__ import annotations

import collections.abc

import numpy

from ..engine.tensor import Tensor, _make


def _stack(samples):
    """The samples' values stacked along a new first axis, as a NumPy array."""
    first = samples[0]
    if isinstance(first, Tensor):
        arrays = [s.detach()._data if not s.is_cuda else s.detach().cpu()._data for s in samples]
    else:
        arrays = [numpy.asarray(s) for s in samples]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise RuntimeError(f"default_collate: samples have different shapes {sorted(shapes)} and cannot be stacked "
                           "into one batch; pad them to one shape, or pass a collate_fn")
    return numpy.stack(arrays)


def collate_arrays(batch):
    """default_collate's work on NumPy arrays (what worker processes produce)."""
    first = batch[0]
    if isinstance(first, (Tensor, numpy.ndarray, numpy.generic)):
        return _stack(batch)
    if isinstance(first, bool):
        return numpy.array(batch, dtype=numpy.bool_)
    if isinstance(first, int):
        return numpy.array(batch, dtype=numpy.int64)
    if isinstance(first, float):
        return numpy.array(batch, dtype=numpy.float64)
    if isinstance(first, (str, bytes)) or first is None:
        return list(batch)
    if isinstance(first, collections.abc.Mapping):
        return {key: collate_arrays([sample[key] for sample in batch]) for key in first}
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # namedtuple
        return type(first)(*(collate_arrays(list(field)) for field in zip(*batch)))
    if isinstance(first, collections.abc.Sequence):
        sizes = {len(sample) for sample in batch}
        if len(sizes) != 1:
            raise RuntimeError(f"default_collate: every sample in a batch must have the same number of "
                               f"elements, got lengths {sorted(sizes)}")
        columns = [collate_arrays(list(column)) for column in zip(*batch)]
        return tuple(columns) if isinstance(first, tuple) else columns
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; samples must hold "
                    "arrays, tensors, numbers, strings, dicts or sequences of these (or pass a collate_fn)")


def arrays_to_tensors(tree):
    """Every NumPy array in `tree` wrapped as a distrain Tensor, without copying."""
    if isinstance(tree, numpy.ndarray):
        return _make(tree)
    if isinstance(tree, dict):
        return {key: arrays_to_tensors(value) for key, value in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(arrays_to_tensors(value) for value in tree))
    if isinstance(tree, (tuple, list)) and not (tree and isinstance(tree[0], (str, bytes))):
        return type(tree)(arrays_to_tensors(value) for value in tree)
    return tree


def convert_sample(sample):
    """No batching (batch_size=None): one sample with its arrays and NumPy scalars as Tensors
    (Python numbers and strings stay as they are), like torch's default_convert."""
    if isinstance(sample, numpy.generic):
        return _make(numpy.asarray(sample))
    if isinstance(sample, numpy.ndarray):
        return _make(sample)
    if isinstance(sample, dict):
        return {key: convert_sample(value) for key, value in sample.items()}
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return type(sample)(*(convert_sample(value) for value in sample))
    if isinstance(sample, (tuple, list)):
        return type(sample)(convert_sample(value) for value in sample)
    return sample


def default_collate(batch):
    """Stack a list of samples into a batch of distrain Tensors (see the module docstring)."""
    return arrays_to_tensors(collate_arrays(batch))


class ArrayRef:
    """Placeholder for the i-th array of a split batch; `tensor` says whether it was a Tensor."""

    __slots__ = ("index", "tensor")

    def __init__(self, index, tensor):
        self.index = index
        self.tensor = tensor

    def __reduce__(self):
        return (ArrayRef, (self.index, self.tensor))


def split_arrays(tree, arrays):
    """Move every array/tensor of `tree` to the list `arrays`; return the skeleton left behind."""
    if isinstance(tree, Tensor):
        arrays.append(tree.detach()._data if not tree.is_cuda else tree.detach().cpu()._data)
        return ArrayRef(len(arrays) - 1, True)
    if isinstance(tree, numpy.ndarray):
        if tree.dtype.hasobject:  # pointers into this process's heap: it travels pickled, in the skeleton
            return tree
        arrays.append(tree)
        return ArrayRef(len(arrays) - 1, False)
    if isinstance(tree, dict):
        return {key: split_arrays(value, arrays) for key, value in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(split_arrays(value, arrays) for value in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(split_arrays(value, arrays) for value in tree)
    return tree


def join_arrays(skeleton, arrays):
    """Put `arrays` back where `split_arrays` took them from (tensors as Tensors again)."""
    if isinstance(skeleton, ArrayRef):
        array = arrays[skeleton.index]
        return _make(array) if skeleton.tensor else array
    if isinstance(skeleton, dict):
        return {key: join_arrays(value, arrays) for key, value in skeleton.items()}
    if isinstance(skeleton, tuple) and hasattr(skeleton, "_fields"):
        return type(skeleton)(*(join_arrays(value, arrays) for value in skeleton))
    if isinstance(skeleton, (tuple, list)):
        return type(skeleton)(join_arrays(value, arrays) for value in skeleton)
    return skeleton
