"""roll, tril/triu (and in place), diag, diagonal, meshgrid, repeat_interleave, tensor_split, and the
split/chunk/unbind variants against PyTorch: values, gradients, and errors naming the argument."""
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

RNG = np.random.default_rng(4)
X = RNG.standard_normal((4, 5))
CUBE = RNG.standard_normal((2, 3, 4))
VECTOR = RNG.standard_normal(4)

OPS = {
    "roll_flat": (lambda lib, x: lib.roll(x, 3), [X]),
    "roll_dim": (lambda lib, x: x.roll(-2, 1), [X]),
    "roll_dims": (lambda lib, x: lib.roll(x, shifts=(1, 7), dims=(0, -1)), [CUBE]),
    "tril": (lambda lib, x: lib.tril(x), [X]),
    "tril_offset": (lambda lib, x: x.tril(-1), [X]),
    "triu": (lambda lib, x: lib.triu(x, 2), [X]),
    "triu_batched": (lambda lib, x: x.triu(diagonal=-1), [CUBE]),
    "diag_of_vector": (lambda lib, v: lib.diag(v), [VECTOR]),
    "diag_of_vector_offset": (lambda lib, v: v.diag(-2), [VECTOR]),
    "diag_of_matrix": (lambda lib, x: lib.diag(x), [X]),
    "diag_of_matrix_offset": (lambda lib, x: x.diag(2), [X]),
    "diagonal": (lambda lib, x: lib.diagonal(x), [X]),
    "diagonal_dims": (lambda lib, x: x.diagonal(offset=1, dim1=-1, dim2=0), [CUBE]),
    "meshgrid_ij": (lambda lib, a, b: lib.meshgrid(a, b, indexing="ij"), [VECTOR, X[0]]),
    "meshgrid_xy": (lambda lib, a, b, c: lib.meshgrid(a, b, c, indexing="xy"), [VECTOR, X[0], CUBE[0, 0]]),
    "meshgrid_list": (lambda lib, a, b: lib.meshgrid([a, b], indexing="xy"), [VECTOR, X[0]]),
    "repeat_interleave_flat": (lambda lib, x: lib.repeat_interleave(x, 2), [X]),
    "repeat_interleave_dim": (lambda lib, x: x.repeat_interleave(3, dim=1), [X]),
    "repeat_interleave_counts": (lambda lib, x, r: x.repeat_interleave(r, dim=0), [X, np.array([1, 0, 3, 2])]),
    "tensor_split_sections": (lambda lib, x: lib.tensor_split(x, 3, dim=1), [X]),
    "tensor_split_indices": (lambda lib, x: x.tensor_split([1, 4, -1, 2], dim=1), [X]),
    "tensor_split_too_many": (lambda lib, x: x.tensor_split(6), [X]),
    "split_sizes": (lambda lib, x: lib.split(x, [2, 0, 3], dim=1), [X]),
    "split_size": (lambda lib, x: x.split(3, -1), [X]),
    "chunk_uneven": (lambda lib, x: x.chunk(3, dim=1), [X]),
    "unbind": (lambda lib, x: lib.unbind(x, 1), [CUBE]),
    "flip_varargs": (lambda lib, x: x.flip(0, 1), [X]),
    "rot90": (lambda lib, x: lib.rot90(x), [X]),
    "rot90_k3_dims": (lambda lib, x: x.rot90(3, (2, 0)), [CUBE]),
    "rot90_k2_negative": (lambda lib, x: x.rot90(-2, [1, 2]), [CUBE]),
    "rot90_k0": (lambda lib, x: x.rot90(4), [X]),
    "rot90_k_minus1": (lambda lib, x: x.rot90(-1), [X]),
}


@pytest.mark.parametrize("name", OPS)
def test_against_torch(name):
    fn, arrays = OPS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


@pytest.mark.parametrize("name", ["roll_dims", "triu_batched", "diag_of_vector_offset", "diagonal_dims",
                                  "repeat_interleave_counts", "tensor_split_indices"])
def test_finite_differences(name):
    fn, arrays = OPS[name]
    check_finite_differences(pair(fn)[0], arrays)


def test_repeat_interleave_of_counts_alone():
    check_op_against_torch(*pair(lambda lib, r: lib.repeat_interleave(r)), [np.array([2, 0, 3])])


@pytest.mark.parametrize("name", ["tril_", "triu_"])
def test_triangles_in_place(name):
    results = []
    for lib in (distrain, torch):
        leaf = lib.tensor(X, requires_grad=True)
        x = leaf * 2.0
        assert getattr(x, name)(1) is x
        x.sum().backward()
        results.append((x.detach().numpy().copy(), leaf.grad.numpy().copy()))
    for mine, theirs in zip(*results):
        np.testing.assert_allclose(mine, theirs)


@pytest.mark.parametrize("call, error, message", [
    (lambda lib, x: lib.roll(x, (1, 2), (0,)), distrain.ArgumentError, "same length"),
    (lambda lib, x: lib.roll(x, 1, 2), distrain.ShapeError, "dim 2 is out of range"),
    (lambda lib, x: lib.tril(x[0]), distrain.ShapeError, "at least 2 dimensions"),
    (lambda lib, x: lib.diag(x[None]), distrain.ShapeError, "1-D or 2-D"),
    (lambda lib, x: lib.diagonal(x, 0, 1, -1), distrain.ShapeError, "must differ"),
    (lambda lib, x: lib.meshgrid(x, x[0], indexing="ij"), distrain.ShapeError, "0-d or 1-D"),
    (lambda lib, x: lib.meshgrid(x[0], x[0], indexing="yx"), distrain.ArgumentError, "'ij' or 'xy'"),
    (lambda lib, x: x.repeat_interleave(lib.tensor([1, 2]), dim=0), distrain.ShapeError, "repeats has 2 counts"),
    (lambda lib, x: x.tensor_split(0), distrain.ArgumentError, "must be positive"),
    (lambda lib, x: x.rot90(1, (0, 0)), distrain.ShapeError, "same dimension twice"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(distrain, to_distrain(X))
    with pytest.raises((RuntimeError, IndexError, ValueError)):
        call(torch, to_torch(X))
