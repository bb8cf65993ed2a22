"""movedim/moveaxis, swapaxes, unflatten, select, broadcast_to/broadcast_tensors, h/v/d/column_stack,
masked_select, take, take_along_dim and diff against PyTorch (values and gradients), with errors."""
import numpy as np
import pytest
import torch

import distrain

from .oracle import (
    FLOAT_DTYPES,
    check_finite_differences,
    check_op_against_torch,
    pair,
    to_distrain,
    to_torch,
)

RNG = np.random.default_rng(9)
X = RNG.standard_normal((2, 3, 4))
V = RNG.standard_normal(4)
M = RNG.standard_normal((3, 4))

OPS = {
    "movedim": (lambda lib, x: lib.movedim(x, 0, -1), [X]),
    "movedim_pairs": (lambda lib, x: x.movedim((0, 2), (2, 0)), [X]),
    "moveaxis": (lambda lib, x: lib.moveaxis(x, [1], [0]), [X]),
    "swapaxes": (lambda lib, x: x.swapaxes(0, 2), [X]),
    "unflatten": (lambda lib, x: lib.unflatten(x, 2, (2, -1)), [X]),
    "unflatten_method": (lambda lib, x: x.unflatten(-2, (1, 3)), [X]),
    "select": (lambda lib, x: lib.select(x, 1, -1), [X]),
    "broadcast_to": (lambda lib, v: lib.broadcast_to(v, (3, 4)), [V]),
    "broadcast_tensors": (lambda lib, x, m, v: lib.broadcast_tensors(x, m, v), [X, M, V]),
    "hstack": (lambda lib, m, v: lib.hstack([m, m[:, :1]]), [M, V]),
    "hstack_vectors": (lambda lib, m, v: lib.hstack((v, m[0])), [M, V]),
    "vstack": (lambda lib, m, v: lib.vstack([m, v]), [M, V]),
    "row_stack": (lambda lib, m, v: lib.row_stack([v, v]), [M, V]),
    "dstack": (lambda lib, m, v: lib.dstack([m, m]), [M, V]),
    "dstack_vectors": (lambda lib, m, v: lib.dstack([v, v]), [M, V]),
    "column_stack": (lambda lib, m, v: lib.column_stack([m[:, 0], m]), [M, V]),
    "masked_select": (lambda lib, x: lib.masked_select(x, x > 0), [X]),
    "masked_select_broadcast": (lambda lib, x, v: x.masked_select(v > 0), [X, V]),
    "take": (lambda lib, x, i: lib.take(x, i), [X, np.array([[0, 23], [5, -1], [5, 7]])]),
    "take_along_dim": (lambda lib, x, i: lib.take_along_dim(x, i, dim=2), [X, np.argsort(X, axis=2)[:, :, :2]]),
    "take_along_dim_broadcast": (lambda lib, x, i: x.take_along_dim(i, 1), [X, np.array([[[2], [0]]])]),
    "take_along_dim_flat": (lambda lib, x, i: lib.take_along_dim(x, i), [X, np.array([3, 3, 0])]),
    "diff": (lambda lib, x: lib.diff(x), [X]),
    "diff_twice_dim0": (lambda lib, x: x.diff(n=2, dim=1), [X]),
    "diff_prepend_append": (lambda lib, m, v: lib.diff(m, dim=0, prepend=v[None], append=m[:1]), [M, V]),
}


@pytest.mark.parametrize("name", OPS)
def test_against_torch(name):
    fn, arrays = OPS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


@pytest.mark.parametrize("name", ["take", "take_along_dim_broadcast", "masked_select_broadcast", "diff_twice_dim0"])
def test_finite_differences(name):
    fn, arrays = OPS[name]
    check_finite_differences(pair(fn)[0], arrays)


@pytest.mark.parametrize("call, error, message", [
    (lambda lib, x: lib.movedim(x, (0, 1), (1,)), distrain.ShapeError, "same number"),
    (lambda lib, x: lib.movedim(x, 3, 0), distrain.ShapeError, "dim 3 is out of range"),
    (lambda lib, x: x.unflatten(1, (2, 2)), distrain.ShapeError, "do not multiply"),
    (lambda lib, x: lib.broadcast_tensors(x, x[:, :2, :3]), distrain.ShapeError, "do not broadcast"),
    (lambda lib, x: x.masked_select(x[0, 0, :3] > 0), distrain.ShapeError, "does not broadcast"),
    (lambda lib, x: x.take(lib.tensor([24])), distrain.IndexingError, "has 24 elements"),
    (lambda lib, x: x.take_along_dim(lib.tensor([[0]]), 1), distrain.ShapeError, "same number of dimensions"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(distrain, to_distrain(X))
    with pytest.raises((RuntimeError, IndexError)):
        call(torch, to_torch(X))
