"""sort, argsort, msort, topk, kthvalue, unique, unique_consecutive against PyTorch: values, int64
indices, gradients through the selected values, and the errors for bad dims and k."""
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

RNG = np.random.default_rng(0)
DISTINCT = RNG.permutation(60).reshape(3, 4, 5).astype(np.float64) / 7.0  # no ties: one right order

SELECTIONS = {
    "sort_last": lambda lib, x: lib.sort(x),
    "sort_dim0_descending": lambda lib, x: x.sort(dim=0, descending=True),
    "sort_dim_neg_stable": lambda lib, x: lib.sort(x, dim=-2, stable=True),
    "argsort": lambda lib, x: lib.argsort(x, dim=1),
    "argsort_descending_method": lambda lib, x: x.argsort(descending=True),
    "msort": lambda lib, x: lib.msort(x),
    "topk": lambda lib, x: lib.topk(x, 2),
    "topk_smallest_dim0": lambda lib, x: x.topk(2, dim=0, largest=False),
    "topk_all": lambda lib, x: x.topk(5, dim=-1),
    "topk_zero": lambda lib, x: x.topk(0, dim=1),
    "topk_values_used": lambda lib, x: x.topk(3, dim=1).values * 2,
    "kthvalue": lambda lib, x: lib.kthvalue(x, 2),
    "kthvalue_keepdim": lambda lib, x: x.kthvalue(3, dim=1, keepdim=True),
    "sort_scalar": lambda lib, x: lib.sort(x[0, 0, 0]),
}


@pytest.mark.parametrize("name", SELECTIONS)
def test_selection_against_torch(name):
    check_op_against_torch(*pair(SELECTIONS[name]), [DISTINCT], FLOAT_DTYPES)


def test_sort_finite_differences():
    check_finite_differences(lambda x: distrain.topk(x, 2, dim=1).values, [DISTINCT])


def test_sort_with_ties_nan_and_integers_as_torch():
    """Ties keep their order (stable), NaN is the largest value, integers and bools sort too."""
    values = np.array([[2.0, np.nan, 1.0, 2.0, -np.inf, 1.0], [0.0, 0.0, 3.0, np.inf, 1.0, np.nan]])
    for descending in (False, True):
        check_op_against_torch(*pair(lambda lib, x, descending=descending: lib.sort(x, descending=descending, stable=True)),
                               [values], np.float32)
    for array in (np.array([3, -9223372036854775808, 3, 7]), np.array([True, False, True])):
        for descending in (False, True):
            check_op_against_torch(*pair(lambda lib, x, descending=descending: lib.sort(x, descending=descending, stable=True)), [array])


UNIQUES = {
    "plain": lambda lib, x: lib.unique(x),
    "unsorted_request": lambda lib, x: x.unique(sorted=False),
    "inverse": lambda lib, x: lib.unique(x, return_inverse=True),
    "counts": lambda lib, x: lib.unique(x, return_counts=True),
    "inverse_counts": lambda lib, x: lib.unique(x, return_inverse=True, return_counts=True),
    "dim0": lambda lib, x: lib.unique(x, dim=0, return_inverse=True, return_counts=True),
    "dim1": lambda lib, x: lib.unique(x, dim=1, return_inverse=True, return_counts=True),
    "consecutive": lambda lib, x: lib.unique_consecutive(x, return_inverse=True, return_counts=True),
    "consecutive_dim0": lambda lib, x: x.unique_consecutive(dim=0, return_inverse=True, return_counts=True),
}


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
@pytest.mark.parametrize("name", UNIQUES)
def test_unique_against_torch(name, dtype):
    x = np.array([[1, 3, 1, 2], [1, 3, 1, 2], [0, 3, 3, 5], [0, 3, 3, 5], [1, 3, 1, 2]]).astype(dtype)
    check_op_against_torch(*pair(UNIQUES[name]), [x], grad=False, requires_grad=[False])


def test_unique_of_a_tensor_that_requires_grad_gives_no_gradient():
    out = distrain.unique(distrain.tensor([2.0, 1.0, 2.0], requires_grad=True))
    assert not out.requires_grad and out.tolist() == torch.unique(torch.tensor([2.0, 1.0, 2.0])).tolist()


@pytest.mark.parametrize("call, message", [
    (lambda lib, x: lib.sort(x, dim=3), "dim 3 is out of range"),
    (lambda lib, x: x.topk(6, dim=-1), "k must be an int in [0, 5]"),
    (lambda lib, x: x.topk(-1), "k must be"),
    (lambda lib, x: x.kthvalue(0), "k must be an int in [1, 5]"),
    (lambda lib, x: lib.unique(x, dim=-4), "dim -4 is out of range"),
    (lambda lib, x: lib.argsort(x, dim=3), "dim 3 is out of range"),
])
def test_bad_arguments_name_them(call, message):
    """distrain names the argument where PyTorch refuses the same call."""
    with pytest.raises(distrain.DistrainError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(distrain, to_distrain(DISTINCT))
    with pytest.raises((RuntimeError, IndexError)):
        call(torch, to_torch(DISTINCT))
