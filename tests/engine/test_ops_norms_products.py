"""norm / Tensor.norm / linalg.norm / vector_norm / matrix_norm, outer, addmm, baddbmm, bmm against
PyTorch: every ord (2, 1, inf, -inf, 0, 3, 0.5, 'fro'), dims and keepdim, gradients (zero vectors
included, where PyTorch's gradient is 0), and the errors for bad ords, dims and shapes."""
import math

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

RNG = np.random.default_rng(5)
X = RNG.standard_normal((3, 4, 5))
M = RNG.standard_normal((4, 5))
WITH_ZERO_ROW = M.copy()
WITH_ZERO_ROW[1] = 0.0

NORMS = {
    "norm_default": lambda lib, x: x.norm(),
    "norm_function": lambda lib, x: lib.norm(x),
    "norm_dim": lambda lib, x: x.norm(dim=1),
    "norm_p1_dim_keepdim": lambda lib, x: lib.norm(x, p=1, dim=-1, keepdim=True),
    "norm_inf": lambda lib, x: x.norm(p=float("inf"), dim=0),
    "norm_p3": lambda lib, x: x.norm(3, dim=(0, 1)),
    "norm_fro_pair": lambda lib, x: x.norm(p="fro", dim=(1, 2)),
    "linalg_norm_default": lambda lib, x: lib.linalg.norm(x),
    "linalg_norm_dim": lambda lib, x: lib.linalg.norm(x, dim=-1, keepdim=True),
    "linalg_norm_ord_dim": lambda lib, x: lib.linalg.norm(x, ord=1, dim=0),
    "linalg_norm_matrix_fro": lambda lib, x: lib.linalg.norm(x, ord="fro", dim=(0, 2)),
    "linalg_norm_matrix_1": lambda lib, x: lib.linalg.norm(x, ord=1, dim=(1, 2)),
    "linalg_norm_matrix_inf_keepdim": lambda lib, x: lib.linalg.norm(x, ord=math.inf, dim=(-1, 0), keepdim=True),
    "linalg_norm_matrix_neg_1": lambda lib, x: lib.linalg.norm(x[0], ord=-1),
    "linalg_norm_matrix_neg_inf": lambda lib, x: lib.linalg.norm(x[0], ord=-math.inf),
    "linalg_norm_vector_ord": lambda lib, x: lib.linalg.norm(x[0, 0], ord=0.5),
    "vector_norm": lambda lib, x: lib.linalg.vector_norm(x, ord=2, dim=(0, 2)),
    "vector_norm_neg_inf": lambda lib, x: lib.linalg.vector_norm(x, ord=-math.inf, dim=1),
    "vector_norm_zero": lambda lib, x: lib.linalg.vector_norm(x, ord=0),
    "matrix_norm": lambda lib, x: lib.linalg.matrix_norm(x),
    "matrix_norm_inf": lambda lib, x: lib.linalg.matrix_norm(x, ord=math.inf, dim=(0, 1)),
}


@pytest.mark.parametrize("name", NORMS)
def test_norms_against_torch(name):
    check_op_against_torch(*pair(NORMS[name]), [X], FLOAT_DTYPES)


def test_vector_norm_computes_in_the_given_dtype():
    check_op_against_torch(*pair(lambda lib, x: lib.linalg.vector_norm(x, dim=1, dtype=lib.float64)), [X], np.float32)


@pytest.mark.parametrize("ord", [2, 1, 3, math.inf])
def test_zero_vectors_have_zero_gradient(ord):
    check_op_against_torch(*pair(lambda lib, x: lib.linalg.vector_norm(x, ord=ord, dim=1)), [WITH_ZERO_ROW])
    check_op_against_torch(*pair(lambda lib, x: x.norm(p=ord)), [np.zeros(3)])


@pytest.mark.parametrize("name", ["norm_default", "norm_p3", "norm_inf", "linalg_norm_matrix_1"])
def test_norm_gradients_of_gradients(name):
    check_finite_differences(pair(NORMS[name])[0], [X])
    check_second_order_against_torch(*pair(NORMS[name]), [X])


PRODUCTS = {
    "outer": (lambda lib, a, b: lib.outer(a, b), [M[0], M[1, :3]]),
    "outer_method_ger": (lambda lib, a, b: a.outer(b) + a.ger(b), [M[0], M[1, :3]]),
    "addmm": (lambda lib, c, a, b: lib.addmm(c, a, b), [M[:, :2], M, X[0].T[:, :2]]),
    "addmm_broadcast_scaled": (lambda lib, c, a, b: c.addmm(a, b, beta=0.5, alpha=-2), [M[0, :2], M, X[0].T[:, :2]]),
    "baddbmm": (lambda lib, c, a, b: lib.baddbmm(c, a, b), [X[:, :, :2], X, X.transpose(0, 2, 1)[:, :, :2]]),
    "baddbmm_scaled": (lambda lib, c, a, b: c.baddbmm(a, b, beta=2.0, alpha=0.5), [X[0, :, :4], X, X.transpose(0, 2, 1)]),
    "bmm": (lambda lib, a, b: lib.bmm(a, b), [X, X.transpose(0, 2, 1)]),
}


@pytest.mark.parametrize("name", PRODUCTS)
def test_products_against_torch(name):
    fn, arrays = PRODUCTS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


def test_baddbmm_beta0_ignores_nan_input():
    nan_input = np.full((3, 4, 4), np.nan)
    check_op_against_torch(*pair(lambda lib, c, a, b: lib.baddbmm(c, a, b, beta=0)),
                           [nan_input, X, X.transpose(0, 2, 1)], requires_grad=[False, True, True])


@pytest.mark.parametrize("call, error, message", [
    (lambda lib, x: x.norm(dim=3), distrain.ShapeError, "dim 3 is out of range"),
    (lambda lib, x: lib.linalg.vector_norm(x, ord="fro"), distrain.ArgumentError, "ord must be a number"),
    (lambda lib, x: lib.linalg.matrix_norm(x, ord=3), distrain.ArgumentError, "ord must be 'fro'"),
    (lambda lib, x: lib.linalg.matrix_norm(x[0, 0]), distrain.ShapeError, "at least 2 dimensions"),
    (lambda lib, x: lib.linalg.matrix_norm(x, dim=(1, 1)), distrain.ShapeError, "same dimension twice"),
    (lambda lib, x: lib.linalg.norm(x, ord=1), distrain.ShapeError, "must be 1-D or 2-D"),
    (lambda lib, x: lib.outer(x, x[0, 0]), distrain.ShapeError, "two 1-D tensors"),
    (lambda lib, x: lib.baddbmm(x[0, :2], x, x), distrain.ShapeError, "bmm"),
    (lambda lib, x: lib.baddbmm(x[:, :2, :2], x, x.transpose(1, 2)), distrain.ShapeError, "does not broadcast"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(distrain, to_distrain(X))
    with pytest.raises((RuntimeError, IndexError, TypeError)):
        call(torch, to_torch(X))
