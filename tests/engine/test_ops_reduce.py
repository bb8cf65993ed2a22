"""Reductions against PyTorch and finite differences: sum mean max min var std prod argmax argmin
logsumexp, over everything and over dims (int, negative, tuple), with and without keepdim."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import distrain

from .oracle import (
    FLOAT_DTYPES,
    HYPOTHESIS,
    check_finite_differences,
    check_op_against_torch,
    check_second_order_against_torch,
    pair,
    to_distrain,
    to_torch,
)

SHAPE = (3, 4, 5)

# name -> f(lib, x). Every reduction appears as a method and as a function, over all and over dims.
REDUCTIONS = {
    # sum
    "sum_all": lambda lib, x: x.sum(),
    "sum_all_function": lambda lib, x: lib.sum(x),
    "sum_dim0": lambda lib, x: x.sum(0),
    "sum_dim1_kw": lambda lib, x: x.sum(dim=1),
    "sum_dim_neg": lambda lib, x: x.sum(-1),
    "sum_dim_keepdim": lambda lib, x: x.sum(1, keepdim=True),
    "sum_dim_tuple": lambda lib, x: x.sum(dim=(0, 2)),
    "sum_dim_tuple_neg_keepdim": lambda lib, x: x.sum(dim=(-1, 0), keepdim=True),
    "sum_dim_function": lambda lib, x: lib.sum(x, dim=1),
    "sum_dim_function_keepdim": lambda lib, x: lib.sum(x, -2, keepdim=True),
    # mean
    "mean_all": lambda lib, x: x.mean(),
    "mean_all_function": lambda lib, x: lib.mean(x),
    "mean_dim0": lambda lib, x: x.mean(0),
    "mean_dim_neg": lambda lib, x: x.mean(-1),
    "mean_dim_keepdim": lambda lib, x: x.mean(dim=1, keepdim=True),
    "mean_dim_tuple": lambda lib, x: x.mean(dim=(0, 2)),
    "mean_dim_tuple_neg_keepdim": lambda lib, x: x.mean((-2, -1), keepdim=True),
    "mean_dim_function": lambda lib, x: lib.mean(x, 2),
    # max / min: over all -> scalar tensor; over a dim -> (values, indices)
    "max_all": lambda lib, x: x.max(),
    "max_all_function": lambda lib, x: lib.max(x),
    "max_dim0": lambda lib, x: x.max(0),
    "max_dim_kw": lambda lib, x: x.max(dim=1),
    "max_dim_neg": lambda lib, x: x.max(-1),
    "max_dim_keepdim": lambda lib, x: x.max(1, keepdim=True),
    "max_dim_function": lambda lib, x: lib.max(x, 2),
    "max_dim_function_keepdim": lambda lib, x: lib.max(x, dim=-2, keepdim=True),
    "max_values_only": lambda lib, x: x.max(1).values,
    "max_values_index0": lambda lib, x: x.max(1)[0] * 2,
    "min_all": lambda lib, x: x.min(),
    "min_all_function": lambda lib, x: lib.min(x),
    "min_dim0": lambda lib, x: x.min(0),
    "min_dim_neg": lambda lib, x: x.min(-1),
    "min_dim_keepdim": lambda lib, x: x.min(dim=2, keepdim=True),
    "min_dim_function": lambda lib, x: lib.min(x, 1),
    "min_values_only": lambda lib, x: x.min(-1).values,
    # var / std: default correction is 1 (unbiased)
    "var_all": lambda lib, x: x.var(),
    "var_all_function": lambda lib, x: lib.var(x),
    "var_all_unbiased_false": lambda lib, x: x.var(unbiased=False),
    "var_all_correction0": lambda lib, x: x.var(correction=0),
    "var_dim": lambda lib, x: x.var(1),
    "var_dim_kw": lambda lib, x: x.var(dim=0),
    "var_dim_neg_keepdim": lambda lib, x: x.var(-1, keepdim=True),
    "var_dim_unbiased_false": lambda lib, x: x.var(1, unbiased=False),
    "var_dim_correction0": lambda lib, x: x.var(dim=2, correction=0),
    "var_dim_correction1": lambda lib, x: x.var(dim=2, correction=1),
    "var_dim_correction2": lambda lib, x: x.var(dim=(0, 1), correction=2),
    "var_dim_tuple": lambda lib, x: x.var(dim=(0, 2)),
    "var_dim_tuple_correction0_keepdim": lambda lib, x: x.var(dim=(0, -1), correction=0, keepdim=True),
    "var_dim_function": lambda lib, x: lib.var(x, dim=1, keepdim=True),
    "var_dim_positional_unbiased_false": lambda lib, x: x.var(1, False),
    "var_dim_positional_unbiased_keepdim": lambda lib, x: x.var(0, True, True),
    "std_dim_positional_unbiased_false": lambda lib, x: x.std(-1, False, True),
    "std_all": lambda lib, x: x.std(),
    "std_all_function": lambda lib, x: lib.std(x),
    "std_all_unbiased_false": lambda lib, x: x.std(unbiased=False),
    "std_all_correction0": lambda lib, x: x.std(correction=0),
    "std_dim": lambda lib, x: x.std(1),
    "std_dim_neg_keepdim": lambda lib, x: x.std(-1, keepdim=True),
    "std_dim_unbiased_false": lambda lib, x: x.std(0, unbiased=False),
    "std_dim_correction0": lambda lib, x: x.std(dim=2, correction=0),
    "std_dim_tuple": lambda lib, x: x.std(dim=(1, 2)),
    "std_dim_function": lambda lib, x: lib.std(x, dim=-2),
    # prod
    "prod_all": lambda lib, x: x.prod(),
    "prod_all_function": lambda lib, x: lib.prod(x),
    "prod_dim": lambda lib, x: x.prod(1),
    "prod_dim_kw": lambda lib, x: x.prod(dim=0),
    "prod_dim_neg_keepdim": lambda lib, x: x.prod(-1, keepdim=True),
    "prod_dim_function": lambda lib, x: lib.prod(x, 2),
    # logsumexp
    "logsumexp_dim": lambda lib, x: x.logsumexp(1),
    "logsumexp_dim_neg": lambda lib, x: x.logsumexp(-1),
    "logsumexp_dim_keepdim": lambda lib, x: x.logsumexp(0, keepdim=True),
    "logsumexp_dim_tuple": lambda lib, x: lib.logsumexp(x, (0, 2)),
    "logsumexp_dim_tuple_keepdim": lambda lib, x: lib.logsumexp(x, dim=(-1, 1), keepdim=True),
    "logsumexp_function": lambda lib, x: lib.logsumexp(x, 2),
}

ARG_REDUCTIONS = {
    "argmax_all": lambda lib, x: x.argmax(),
    "argmax_all_function": lambda lib, x: lib.argmax(x),
    "argmax_dim": lambda lib, x: x.argmax(1),
    "argmax_dim_kw": lambda lib, x: x.argmax(dim=0),
    "argmax_dim_neg_keepdim": lambda lib, x: x.argmax(-1, keepdim=True),
    "argmax_dim_function": lambda lib, x: lib.argmax(x, dim=2),
    "argmin_all": lambda lib, x: x.argmin(),
    "argmin_all_function": lambda lib, x: lib.argmin(x),
    "argmin_dim": lambda lib, x: x.argmin(1),
    "argmin_dim_neg_keepdim": lambda lib, x: x.argmin(dim=-2, keepdim=True),
    "argmin_dim_function": lambda lib, x: lib.argmin(x, 0),
}


def _data(name, shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    if name.startswith("prod"):
        # magnitudes near 1 so that products of up to 60 factors stay well scaled
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.7, 1.3, size=shape)
    return rng.standard_normal(shape)


# float32 reductions sum many terms in a different order than torch does
def _tols(dtype):
    return (1e-5, 1e-5) if np.dtype(dtype) == np.float32 else (1e-9, 1e-11)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reduction_matches_torch(name, dtype, device):
    rtol, atol = _tols(dtype)
    check_op_against_torch(*pair(REDUCTIONS[name]), [_data(name)], dtype, device, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reduction_finite_differences(name, device):
    f = REDUCTIONS[name]

    def fn(x):
        out = f(distrain, x)
        return out[0] if isinstance(out, tuple) else out

    check_finite_differences(fn, [_data(name, (2, 3, 4), seed=1)], device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["sum_dim_tuple", "mean_dim_keepdim", "max_dim0", "min_all", "var_dim_tuple",
                                  "std_dim", "prod_dim", "logsumexp_dim_tuple"])
def test_reduction_on_non_contiguous_input(name, dtype, device):
    rtol, atol = _tols(dtype)
    check_op_against_torch(
        *pair(REDUCTIONS[name]), [_data(name, (5, 4, 6))], dtype, device, rtol=rtol, atol=atol,
        transforms=[lambda t: t.permute(2, 1, 0)[1:, :, ::2]],
    )


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "logsumexp", "prod"])
def test_reduction_property_random_dims(name, device):
    """Random shapes, random dim subsets (as ints, negative ints, tuples), random keepdim."""

    @HYPOTHESIS
    @given(
        shape=st.lists(st.integers(2, 4), min_size=1, max_size=4).map(tuple),
        data=st.data(),
        keepdim=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def run(shape, data, keepdim, seed):
        ndim = len(shape)
        dims = data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        dims = tuple(d - ndim if data.draw(st.booleans()) else d for d in dims)
        if name == "prod":  # prod reduces one dim at a time
            dims = dims[0]
        elif len(dims) == 1 and data.draw(st.booleans()):
            dims = dims[0]
        f = lambda lib, x: getattr(x, name)(dims, keepdim=keepdim)  # noqa: E731
        x = _data(name, shape, seed)
        for dtype in FLOAT_DTYPES:
            rtol, atol = _tols(dtype)
            check_op_against_torch(*pair(f), [x], dtype, device, rtol=rtol, atol=atol, seed=seed)

    run()


def test_max_dim_returns_values_and_indices(device):
    x = _data("max", (3, 4))
    d, t = to_distrain(x, device, requires_grad=True), to_torch(x, requires_grad=True)
    for lib_call in (lambda a: a.max(1), lambda a: a.min(0)):
        d_out, t_out = lib_call(d), lib_call(t)
        values, indices = d_out
        np.testing.assert_array_equal(d_out.values.detach().cpu().numpy(), t_out.values.detach().numpy())
        np.testing.assert_array_equal(d_out.indices.cpu().numpy(), t_out.indices.numpy())
        np.testing.assert_array_equal(values.detach().cpu().numpy(), t_out.values.detach().numpy())
        np.testing.assert_array_equal(indices.cpu().numpy(), t_out.indices.numpy())
        assert indices.dtype == distrain.int64
        assert not indices.requires_grad
        assert values.requires_grad


@pytest.mark.parametrize("name", ["max_all", "max_dim0", "min_all", "min_dim_neg"])
def test_max_min_of_int_tensors(name, device):
    x = (np.random.default_rng(2).permutation(60) - 30).reshape(SHAPE).astype(np.int64)  # no ties
    check_op_against_torch(*pair(REDUCTIONS[name]), [x], np.float64, device, grad=False)


@pytest.mark.parametrize("name", list(ARG_REDUCTIONS))
def test_argmax_argmin_match_torch(name, device):
    f = ARG_REDUCTIONS[name]
    for dtype in FLOAT_DTYPES:
        d_out, _ = check_op_against_torch(*pair(f), [_data(name)], dtype, device, grad=False)
        assert d_out[0].dtype == distrain.int64
        assert not d_out[0].requires_grad
        assert d_out[0].grad_fn is None
    ints = np.random.default_rng(3).permutation(60).reshape(SHAPE).astype(np.int64)
    check_op_against_torch(*pair(f), [ints], np.float64, device, grad=False)


# --- prod with zeros: the gradient must not be a 0/0 ------------------------------------------

PROD_ZERO_CASES = {
    "all_one_zero": (lambda lib, x: x.prod(), [(1, 2)]),
    "all_two_zeros": (lambda lib, x: x.prod(), [(0, 1), (2, 3)]),
    "dim_one_zero": (lambda lib, x: x.prod(1), [(1, 2)]),
    "dim_zero_in_each_row": (lambda lib, x: x.prod(1), [(0, 0), (1, 3), (2, 1)]),
    "dim_two_zeros_same_row": (lambda lib, x: x.prod(1), [(1, 0), (1, 2)]),
    "dim0_keepdim": (lambda lib, x: x.prod(0, keepdim=True), [(0, 2), (2, 2), (1, 1)]),
    "dim_neg": (lambda lib, x: x.prod(-1), [(2, 3)]),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(PROD_ZERO_CASES))
def test_prod_with_zeros_matches_torch(case, dtype, device):
    f, zeros = PROD_ZERO_CASES[case]
    x = _data("prod", (3, 4), seed=4)
    for idx in zeros:
        x[idx] = 0.0
    check_op_against_torch(*pair(f), [x], dtype, device)


@pytest.mark.parametrize("case", list(PROD_ZERO_CASES))
def test_prod_with_zeros_finite_differences(case, device):
    f, zeros = PROD_ZERO_CASES[case]
    x = _data("prod", (3, 4), seed=4)
    for idx in zeros:
        x[idx] = 0.0
    check_finite_differences(lambda t: f(distrain, t), [x], device)


# --- numerical stability ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("offset", [1000.0, -1000.0])
def test_logsumexp_is_stable_for_large_inputs(offset, dtype, device):
    x = _data("logsumexp", (3, 5)) + offset
    d_out, _ = check_op_against_torch(*pair(lambda lib, t: t.logsumexp(1)), [x], dtype, device, rtol=1e-6, atol=1e-4)
    assert np.all(np.isfinite(d_out[0].detach().cpu().numpy()))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_logsumexp_with_minus_inf_entries(dtype, device):
    x = _data("logsumexp", (3, 5))
    x[0, 1] = -np.inf
    x[2, :] = [-np.inf, 0.5, -np.inf, -np.inf, 1.5]
    check_op_against_torch(*pair(lambda lib, t: t.logsumexp(-1)), [x], dtype, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_var_with_large_offset(dtype, device):
    # a naive E[x^2] - E[x]^2 loses every digit here
    x = _data("var", (4, 6)) + 1e4
    # float32: x - mean carries the rounding of a mean near 1e4 (one ulp ~ 1e-3)
    rtol, atol = (2e-3, 1e-3) if np.dtype(dtype) == np.float32 else (1e-7, 1e-9)
    check_op_against_torch(*pair(lambda lib, t: t.var(1)), [x], dtype, device, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_reduction_of_a_broadcast_product(dtype, device):
    # sum/mean after broadcasting: gradients must be reduced back to the operand shapes
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((3, 1, 5)), rng.standard_normal((4, 1))
    rtol, atol = _tols(dtype)
    for f in (lambda lib, x, y: (x * y).sum(), lambda lib, x, y: (x + y).mean(dim=(0, -1)),
              lambda lib, x, y: (x - y).var(1), lambda lib, x, y: (x * y).max(dim=1).values):
        check_op_against_torch(*pair(f), [a, b], dtype, device, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_keepdim_without_dim(name, device):
    # torch: the index into the flattened tensor, shaped (1, ..., 1) with keepdim=True
    f = lambda lib, x: getattr(x, name)(keepdim=True)  # noqa: E731
    check_op_against_torch(*pair(f), [_data(name, (3, 4))], np.float64, device, grad=False)


def test_logsumexp_of_a_row_of_minus_inf(device):
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, -np.inf]])
    check_op_against_torch(*pair(lambda lib, t: t.logsumexp(1)), [x], np.float64, device, grad=False)


@pytest.mark.parametrize("name", ["sum_dim0", "sum_all", "prod_dim", "sum_dim_keepdim"])
def test_reduction_over_an_empty_dim(name, device):
    check_op_against_torch(*pair(REDUCTIONS[name]), [np.zeros((0, 3, 2))], np.float64, device)


SECOND_ORDER = ["sum_dim_tuple", "mean_dim_keepdim", "max_all", "max_dim_neg", "min_dim0", "var_all", "var_dim_tuple",
                "std_dim", "std_all_correction0", "prod_all", "prod_dim", "logsumexp_dim", "logsumexp_dim_tuple"]


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_reduction_second_derivative_matches_torch(name, device):
    f = REDUCTIONS[name]

    def first(lib):
        def g(x):
            out = f(lib, x)
            out = out[0] if isinstance(out, tuple) else out
            return out * out  # nonlinear on top, so even linear reductions have a second derivative

        return g

    check_second_order_against_torch(first(distrain), first(torch), [_data(name, (3, 4, 5), seed=5)], np.float64, device)


def test_prod_with_a_zero_second_derivative_matches_torch(device):
    x = _data("prod", (3, 4), seed=6)
    x[1, 2] = 0.0
    check_second_order_against_torch(*pair(lambda lib, t: t.prod(1)), [x], np.float64, device)


@pytest.mark.parametrize("name", ["sum_all", "sum_dim0", "sum_dim_tuple_neg_keepdim", "prod_all", "prod_dim"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_integer_and_bool_sums_are_int64(name, dtype, device):
    x = np.random.default_rng(8).integers(0, 3, size=(3, 4, 5)).astype(dtype)
    if name.startswith("prod"):
        x = x[:, :2, :2]  # keep products small
    check_op_against_torch(*pair(REDUCTIONS[name]), [x], np.float64, device, grad=False)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["max_all", "min_all"])
def test_full_max_min_split_the_gradient_among_ties(name, dtype, device):
    # not a differentiable point: compared with torch's convention (evenly distributed) only
    x = np.array([[1.0, 3.0, -2.0], [3.0, -2.0, 3.0]])
    check_op_against_torch(*pair(REDUCTIONS[name]), [x], dtype, device)


ZERO_DIM = {
    "sum_dim": lambda lib, x: x.sum(0),
    "sum_dim_keepdim": lambda lib, x: x.sum(-1, keepdim=True),
    "mean_dim": lambda lib, x: x.mean(0),
    "max_dim": lambda lib, x: x.max(0),
    "min_dim_keepdim": lambda lib, x: x.min(-1, keepdim=True),
    "max_all": lambda lib, x: x.max(),
    "prod_all": lambda lib, x: x.prod(),
    "prod_dim": lambda lib, x: x.prod(0),
    "logsumexp_dim": lambda lib, x: x.logsumexp(0),
    "argmax_all": lambda lib, x: x.argmax(),
    "argmin_dim": lambda lib, x: x.argmin(0),
}


@pytest.mark.parametrize("name", list(ZERO_DIM))
def test_reductions_of_a_zero_dim_tensor(name, device):
    # a 0-d tensor has one element; dim 0 / -1 is accepted and reduces nothing (as in torch)
    check_op_against_torch(*pair(ZERO_DIM[name]), [np.array(-0.7)], np.float64, device)


def test_sum_over_a_list_of_dims(device):
    check_op_against_torch(*pair(lambda lib, x: x.sum([0, 2])), [_data("sum", (2, 3, 4))], np.float64, device)
