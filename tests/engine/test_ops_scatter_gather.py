"""scatter, scatter_add, index_add, index_copy, index_fill, masked_fill (out of place and in place),
nonzero / argwhere / where(condition) against PyTorch: values, gradients (repeated indices
included), result dtypes, and the errors for bad dims, shapes and index dtypes."""
import numpy as np
import pytest
import torch

import distrain

from .oracle import (
    FLOAT_DTYPES,
    check_finite_differences,
    check_op_against_torch,
    check_second_order_against_torch,
    pair,
    to_distrain,
    to_torch,
)

RNG = np.random.default_rng(1)
X = RNG.standard_normal((4, 5))
SRC = RNG.standard_normal((3, 6))
INDEX_DIM0 = np.array([[0, 1, 2, 3, 0], [2, 0, 1, 1, 3], [3, 3, 0, 2, 1]])  # distinct per column: scatter is defined
INDEX_DIM1 = np.array([[0, 4, 2], [1, 3, 0], [4, 0, 1]])
REPEATED = np.array([[0, 0, 2, 0, 1], [0, 2, 2, 3, 1]])
ROWS = np.array([3, 0, 3, 1])

OPS = {
    "scatter_dim0": (lambda lib, x, s, i: lib.scatter(x, 0, i, s), [X, SRC[:, :5], INDEX_DIM0]),
    "scatter_dim1_method": (lambda lib, x, s, i: x.scatter(1, i, s), [X, SRC[:, :3], INDEX_DIM1]),
    "scatter_value": (lambda lib, x, i: x.scatter(0, i, 2.5), [X, INDEX_DIM0]),
    "scatter_value_kw": (lambda lib, x, i: lib.scatter(x, -1, i, value=-1.0), [X, INDEX_DIM1]),
    # PyTorch deprecates reduce= (and warns): the oracle is its scatter_add
    "scatter_reduce_add": (lambda lib, x, s, i: x.scatter(0, i, s, reduce="add") if lib is distrain
                           else x.scatter_add(0, i, s), [X, SRC[:2, :5], REPEATED]),
    "scatter_add": (lambda lib, x, s, i: lib.scatter_add(x, 0, i, s), [X, SRC[:2, :5], REPEATED]),
    "scatter_add_dim1": (lambda lib, x, s, i: x.scatter_add(1, i, s), [X, SRC[:, :3], INDEX_DIM1]),
    "index_add": (lambda lib, x, s, i: lib.index_add(x, 0, i, s), [X, RNG.standard_normal((4, 5)), ROWS]),
    "index_add_alpha_dim1": (lambda lib, x, s, i: x.index_add(1, i, s, alpha=-2.0),
                             [X, RNG.standard_normal((4, 3)), np.array([4, 4, 0])]),
    "index_copy": (lambda lib, x, s, i: lib.index_copy(x, 1, i, s), [X, RNG.standard_normal((4, 2)), np.array([3, 1])]),
    "index_fill": (lambda lib, x, i: x.index_fill(1, i, -3.0), [X, np.array([0, 2])]),
    "masked_fill": (lambda lib, x, m: x.masked_fill(m, 0.5), [X, X > 0.3]),
    "masked_fill_broadcast_mask": (lambda lib, x, m: lib.masked_fill(x, m, float("-inf")), [X, X[:1] > 0]),
    "masked_fill_tensor_value": (lambda lib, x, m, v: x.masked_fill(m, v), [X, X > 0, np.array(1.5)]),
}


@pytest.mark.parametrize("name", OPS)
def test_op_against_torch(name):
    fn, arrays = OPS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


@pytest.mark.parametrize("fn", [lambda lib, x, s, i: x.scatter(0, i, s), lambda lib, x, s, i: x.scatter_add(1, i, s)])
def test_src_larger_than_index(fn):
    """Only src's leading block (the index's shape) is used; PyTorch has no gradient for the rest, distrain gives 0."""
    check_op_against_torch(*pair(fn), [X, SRC, INDEX_DIM0[:, :3]], requires_grad=[True, False, False])


@pytest.mark.parametrize("name", ["scatter_dim0", "scatter_add", "index_add", "masked_fill_tensor_value"])
def test_finite_differences_and_second_order(name):
    fn, arrays = OPS[name]
    check_finite_differences(pair(fn)[0], arrays)
    check_second_order_against_torch(*pair(lambda lib, *xs: fn(lib, *xs) ** 2), arrays)


IN_PLACE = {
    "scatter_": lambda x, i, s: x.scatter_(0, i, s[:2, :5]),
    "scatter_value_": lambda x, i, s: x.scatter_(0, i, 7.0),
    "scatter_add_": lambda x, i, s: x.scatter_add_(0, i, s[:2, :5]),
    "index_add_": lambda x, i, s: x.index_add_(0, i[0, :3], s[:3, :5], alpha=3),
    "index_fill_": lambda x, i, s: x.index_fill_(0, i[0, :2], -1.0),
    "index_copy_": lambda x, i, s: x.index_copy_(0, i[1, :2], s[:2, :5]),
    "masked_fill_": lambda x, i, s: x.masked_fill_(x > 0, 0.0),
}


@pytest.mark.parametrize("name", IN_PLACE)
@pytest.mark.parametrize("recorded", [False, True])
def test_in_place_forms(name, recorded):
    """Outside the graph the tensor itself changes; inside it, gradients flow as for the twin op."""
    fn = IN_PLACE[name]
    index = INDEX_DIM0[:2].copy()
    results = []
    for lib in (distrain, torch):
        leaf = lib.tensor(X, requires_grad=recorded)
        src = lib.tensor(SRC, requires_grad=recorded)
        x = leaf * 1.0 if recorded else leaf
        out = fn(x, lib.tensor(index), src)
        assert out is x
        if recorded:
            (x * lib.tensor(X)).sum().backward()
        results.append([np.asarray(x.detach().numpy())] + ([leaf.grad.numpy(), src.grad.numpy() if src.grad is not None
                                                             else np.zeros_like(SRC)] if recorded else []))
    for mine, theirs in zip(*results):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12)


def test_int_tensors_keep_their_dtype():
    x = np.arange(12).reshape(3, 4)
    for fn in (lambda lib, t: t.masked_fill(t > 4, 2.7), lambda lib, t: t.scatter(0, lib.tensor([[2, 0, 1, 0]]), 9),
               lambda lib, t: t.index_add(0, lib.tensor([0, 0]), t[:2]),
               lambda lib, t: t.scatter_add(1, lib.tensor([[0, 0]]), t[:1, :2])):
        check_op_against_torch(*pair(fn), [x], grad=False)


NONZEROS = {
    "nonzero": lambda lib, x: lib.nonzero(x),
    "nonzero_method_tuple": lambda lib, x: x.nonzero(as_tuple=True),
    "argwhere": lambda lib, x: lib.argwhere(x),
    "where_one_argument": lambda lib, x: lib.where(x > 0),
    "index_by_where": lambda lib, x: x[lib.where(x > 0)] if x.ndim else x,
}


@pytest.mark.parametrize("name", NONZEROS)
@pytest.mark.parametrize("shape", [(4, 5), (7,), ()])
def test_nonzero_against_torch(name, shape):
    x = np.where(RNG.random(shape) > 0.5, RNG.standard_normal(shape), 0.0)
    check_op_against_torch(*pair(NONZEROS[name]), [x], requires_grad=[False])


@pytest.mark.parametrize("call, error, message", [
    (lambda lib, x, s: lib.scatter(x, 2, lib.tensor(INDEX_DIM0), s), distrain.ShapeError, "dim 2 is out of range"),
    (lambda lib, x, s: lib.scatter(x, 0, lib.tensor(INDEX_DIM0[0]), s), distrain.ShapeError, "index has 1 dimension"),
    (lambda lib, x, s: lib.scatter(x, 0, lib.tensor(INDEX_DIM0).float(), s), distrain.DTypeError, "index must be an integer"),
    (lambda lib, x, s: lib.scatter_add(x, 0, lib.tensor(INDEX_DIM0 + 2), s), distrain.IndexingError, "has size 4"),
    (lambda lib, x, s: lib.scatter_add(x, 1, lib.tensor(np.zeros((3, 7), dtype=np.int64)), s), distrain.ShapeError,
     "larger than"),
    (lambda lib, x, s: lib.index_add(x, 0, lib.tensor([0, 1]), s), distrain.ShapeError, "source must have shape (2, 5)"),
    (lambda lib, x, s: lib.index_add(x, 0, lib.tensor([0, 4]), s[:2, :5]), distrain.IndexingError, "has size 4"),
    (lambda lib, x, s: x.masked_fill(lib.tensor([True, False]), 0.0), distrain.ShapeError, "mask of shape (2,)"),
    (lambda lib, x, s: x.masked_fill(x > 0, lib.tensor([1.0, 2.0])), distrain.ShapeError, "0-d"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(distrain, to_distrain(X), to_distrain(SRC))
    with pytest.raises((RuntimeError, IndexError)):
        call(torch, to_torch(X), to_torch(SRC))


TIED_SRC = np.round(RNG.standard_normal((3, 5)), 1)
TIED_SRC[1, 0] = TIED_SRC[0, 0]  # two values tie for the extreme of one target: they share its gradient
SPREAD = np.array([[0, 0, 2, 0, 1], [0, 2, 2, 3, 1], [1, 1, 1, 1, 1]])


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["sum", "mean", "amax", "amin"])
def test_scatter_reduce_against_torch(reduce, include_self):
    check_op_against_torch(*pair(lambda lib, x, s, i: x.scatter_reduce(0, i, s, reduce, include_self=include_self)),
                           [X, TIED_SRC, SPREAD], FLOAT_DTYPES)
    check_op_against_torch(*pair(lambda lib, x, s, i: lib.scatter_reduce(x, 1, i.t()[:4, :3], s.t()[:4, :3], reduce,
                                                                         include_self=include_self)),
                           [X, TIED_SRC, SPREAD])


def test_scatter_reduce_in_place_and_refusals():
    results = []
    for lib in (distrain, torch):
        x = lib.tensor(X)
        assert x.scatter_reduce_(0, lib.tensor(SPREAD), lib.tensor(TIED_SRC), "amax") is x
        results.append(x.numpy())
    np.testing.assert_array_equal(*results)
    with pytest.raises(distrain.DTypeError, match="reduce must be"):
        distrain.tensor(X).scatter_reduce(0, distrain.tensor(SPREAD), distrain.tensor(TIED_SRC), "maxi")
    with pytest.raises(RuntimeError):
        torch.tensor(X).scatter_reduce(0, torch.tensor(SPREAD), torch.tensor(TIED_SRC), "maxi")


PUTS = {
    "index_put": (lambda lib, x, v: x.index_put((lib.tensor([0, 2, 0]), lib.tensor([1, 1, 1])), v[0, :3]), [X, SRC]),
    "index_put_accumulate": (lambda lib, x, v: lib.index_put(x, (lib.tensor([0, 2, 0]),), v[:3, :5], accumulate=True),
                             [X, SRC]),
    "index_put_broadcast_value": (lambda lib, x, v: x.index_put((lib.tensor([3, 1]),), v[0, 0], accumulate=True),
                                  [X, SRC]),
    "masked_scatter": (lambda lib, x, v: x.masked_scatter(x > 0, v), [X, SRC]),
    "masked_scatter_broadcast": (lambda lib, x, v: lib.masked_scatter(x, x[0] > 0, v), [X, SRC]),
}


@pytest.mark.parametrize("name", PUTS)
def test_index_put_and_masked_scatter_against_torch(name):
    fn, arrays = PUTS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


@pytest.mark.parametrize("shape, wrap", [((4, 4), False), ((6, 3), False), ((7, 3), True), ((3, 5), True), ((3, 3, 3), False)])
def test_fill_diagonal_and_in_place_puts_as_torch(shape, wrap):
    results = []
    for lib in (distrain, torch):
        x = lib.zeros(shape)
        assert x.fill_diagonal_(2.5, wrap=wrap) is x
        y = lib.zeros(4, 5)
        y.index_put_((lib.tensor([1, 1]), lib.tensor([0, 0])), lib.tensor(3.0), accumulate=True)
        y.masked_scatter_(y == 0, lib.arange(20.0))
        results.append((x.numpy().copy(), y.numpy().copy()))
    for mine, theirs in zip(*results):
        np.testing.assert_array_equal(mine, theirs)


def test_masked_scatter_needs_enough_source():
    with pytest.raises(distrain.ShapeError, match="selects 20 elements"):
        distrain.zeros(4, 5).masked_scatter(distrain.ones(4, 5, dtype=distrain.bool), distrain.ones(3))
    with pytest.raises(RuntimeError):
        torch.zeros(4, 5).masked_scatter(torch.ones(4, 5, dtype=torch.bool), torch.ones(3))
