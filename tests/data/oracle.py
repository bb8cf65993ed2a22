"""Helpers for the data tests: batches from distrain and from torch.utils.data as comparable trees.

`plain(batch)` turns a batch (distrain or torch Tensors, NumPy arrays, numbers, strings,
dicts, sequences, namedtuples) into a tree of tagged NumPy *copies*; copying matters because a
batch from a multi-worker distrain loader views a shared-memory slot that is reused once the
next batch is requested. `assert_same(a, b)` compares two such trees: values, shapes and
dtypes exactly, Tensor vs array vs Python object, container kinds.

torch's default_collate returns a *list* for tuple samples ("backwards compatibility") where
distrain keeps the tuple, so a plain tuple and a list compare equal here; namedtuples, dicts
and the rest must match in kind.
"""
from __future__ import annotations

import numpy as np
import torch

import distrain


def plain(tree):
    """A tagged, copied, NumPy-only image of `tree` (see the module docstring)."""
    if isinstance(tree, distrain.Tensor):
        return ("tensor", np.array(tree.detach().cpu().numpy(), copy=True))
    if isinstance(tree, torch.Tensor):
        return ("tensor", tree.detach().numpy().copy())
    if isinstance(tree, np.ndarray):
        return ("array", tree.copy())
    if isinstance(tree, np.generic):
        return ("numpy scalar", np.asarray(tree).copy())
    if isinstance(tree, dict):
        return ("dict", {key: plain(value) for key, value in tree.items()})
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return ("namedtuple " + type(tree).__name__, [plain(value) for value in tree])
    if isinstance(tree, (tuple, list)):
        return ("sequence", [plain(value) for value in tree])
    return ("object", tree)


def assert_same(actual, expected, where="batch"):
    """Two `plain` trees are equal: same kinds, same dtypes and shapes, same values."""
    kind_a, value_a = actual
    kind_e, value_e = expected
    assert kind_a == kind_e, f"{where}: {kind_a} where {kind_e} was expected"
    if kind_a in ("tensor", "array", "numpy scalar"):
        assert value_a.dtype == value_e.dtype, f"{where}: dtype {value_a.dtype}, expected {value_e.dtype}"
        assert value_a.shape == value_e.shape, f"{where}: shape {value_a.shape}, expected {value_e.shape}"
        np.testing.assert_array_equal(value_a, value_e, err_msg=where)
    elif kind_a == "dict":
        assert list(value_a) == list(value_e), f"{where}: keys {list(value_a)}, expected {list(value_e)}"
        for key in value_a:
            assert_same(value_a[key], value_e[key], f"{where}[{key!r}]")
    elif kind_a == "sequence" or kind_a.startswith("namedtuple"):
        assert len(value_a) == len(value_e), f"{where}: {len(value_a)} elements, expected {len(value_e)}"
        for i, (a, e) in enumerate(zip(value_a, value_e)):
            assert_same(a, e, f"{where}[{i}]")
    else:
        assert type(value_a) is type(value_e) and value_a == value_e, f"{where}: {value_a!r}, expected {value_e!r}"


def collect(loader_or_iterator):
    """Every batch of one pass, each copied as it arrives (`plain`)."""
    return [plain(batch) for batch in loader_or_iterator]


def assert_same_batches(actual, expected, where=""):
    """Two lists of `plain` batches are equal, batch by batch."""
    prefix = f"{where}: " if where else ""
    assert len(actual) == len(expected), f"{prefix}{len(actual)} batches, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_same(a, e, f"{prefix}batch {i}")
