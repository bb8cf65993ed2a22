"""nansum/nanmean/count_nonzero/median/nanmedian/var_mean/std_mean, mv/inner/vdot/tensordot/trace/
kron/cross/cdist, and searchsorted/bucketize/bincount/histc/tril_indices/triu_indices against PyTorch."""
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
)

RNG = np.random.default_rng(10)
X = RNG.permutation(24).reshape(2, 3, 4) / 5.0 - 2.0  # distinct values: one median
WITH_NAN = X.copy()
WITH_NAN[0, 1, 2] = WITH_NAN[1, 0, 0] = np.nan
M = RNG.standard_normal((3, 4))
V = RNG.standard_normal(4)

REDUCTIONS = {
    "nansum": (lambda lib, x: lib.nansum(x), [WITH_NAN]),
    "nansum_dim": (lambda lib, x: x.nansum(dim=1, keepdim=True), [WITH_NAN]),
    "nanmean_dims": (lambda lib, x: lib.nanmean(x, dim=(0, 2)), [WITH_NAN]),
    "count_nonzero": (lambda lib, x: lib.count_nonzero(x.round()), [X]),
    "count_nonzero_dims": (lambda lib, x: x.round().count_nonzero(dim=(0, 2)), [X]),
    "median_all": (lambda lib, x: lib.median(x), [X]),
    "median_dim": (lambda lib, x: x.median(dim=1), [X]),
    "median_even_dim_keepdim": (lambda lib, x: lib.median(x, -1, keepdim=True), [X]),
    "median_nan": (lambda lib, x: x.median(dim=2), [WITH_NAN]),
    "nanmedian": (lambda lib, x: lib.nanmedian(x, dim=1), [WITH_NAN]),
    "var_mean": (lambda lib, x: lib.var_mean(x, dim=1), [X]),
    "std_mean": (lambda lib, x: lib.std_mean(x, dim=(0, 2), correction=0, keepdim=True), [X]),
}

def test_nanmean_of_an_all_nan_slice_is_nan_quietly():
    """The value is PyTorch's (NaN, and no warning); the gradient there is 0 where PyTorch's is 0/0 = NaN."""
    columns_of_nan = np.where(np.arange(4) < 2, np.nan, X[0])
    check_op_against_torch(*pair(lambda lib, x: x.nanmean(dim=0)), [columns_of_nan], FLOAT_DTYPES, grad=False)
    x = to_distrain(columns_of_nan, requires_grad=True)
    x.nanmean(dim=0).sum().backward()
    assert not np.isnan(x.grad.numpy()).any() and not x.grad.numpy()[:, :2].any()


CONTRACTIONS = {
    "mv": (lambda lib, m, v: lib.mv(m, v), [M, V]),
    "mv_method": (lambda lib, m, v: m.mv(v), [M, V]),
    "inner": (lambda lib, m, v: lib.inner(m, m), [M, V]),
    "vdot": (lambda lib, m, v: lib.vdot(v, m[0]), [M, V]),
    "tensordot_int": (lambda lib, m, v: lib.tensordot(m, m.t(), 1), [M, V]),
    "tensordot_lists": (lambda lib, m, v: lib.tensordot(m, m, dims=([0, 1], [0, 1])), [M, V]),
    "tensordot_pair": (lambda lib, m, v: lib.tensordot(m, v, dims=([1], [0])), [M, V]),
    "trace": (lambda lib, m, v: lib.trace(m[:, :3]), [M, V]),
    "kron": (lambda lib, m, v: lib.kron(m[:2, :2], m), [M, V]),
    "kron_vector_matrix": (lambda lib, m, v: v.kron(m), [M, V]),
    "cross": (lambda lib, m, v: lib.cross(m[:, :3], m[:, 1:], dim=1), [M, V]),
    "cdist": (lambda lib, m, v: lib.cdist(m, m[:2] + 1.0), [M, V]),
    "cdist_p1": (lambda lib, m, v: lib.cdist(m, m[:2] + 1.0, p=1.0), [M, V]),
}


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_against_torch(name):
    fn, arrays = REDUCTIONS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


@pytest.mark.parametrize("name", CONTRACTIONS)
def test_contractions_against_torch(name):
    fn, arrays = CONTRACTIONS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


@pytest.mark.parametrize("name", ["kron", "cross", "cdist", "tensordot_lists"])
def test_contraction_finite_differences(name):
    fn, arrays = CONTRACTIONS[name]
    check_finite_differences(pair(fn)[0], arrays)


COUNTING = {
    "searchsorted": lambda lib, b, q: lib.searchsorted(b, q),
    "searchsorted_right_int32": lambda lib, b, q: lib.searchsorted(b, q, right=True, out_int32=True),
    "searchsorted_side": lambda lib, b, q: lib.searchsorted(b, q, side="right"),
    "searchsorted_rows": lambda lib, b, q: lib.searchsorted(lib.stack([b, b * 2]), lib.stack([q[0], q[1]])),
    "bucketize": lambda lib, b, q: lib.bucketize(q, b),
    "bucketize_right": lambda lib, b, q: lib.bucketize(q, b, right=True),
}


@pytest.mark.parametrize("name", COUNTING)
def test_searching_against_torch(name):
    boundaries = np.array([-1.0, 0.0, 0.5, 2.0])
    queries = np.array([[-3.0, 0.0, 0.25, 2.0], [2.5, -1.0, 0.5, 0.7]])
    check_op_against_torch(*pair(COUNTING[name]), [boundaries, queries], FLOAT_DTYPES, requires_grad=[False, False])


def test_counting_against_torch():
    ints = np.array([0, 3, 3, 1, 7, 3])
    check_op_against_torch(*pair(lambda lib, i: lib.bincount(i)), [ints])
    check_op_against_torch(*pair(lambda lib, i: i.bincount(minlength=10)), [ints])
    check_op_against_torch(*pair(lambda lib, i, w: lib.bincount(i, w)), [ints, RNG.standard_normal(6)],
                           requires_grad=[False, False])
    for kwargs in ({}, {"bins": 5}, {"bins": 4, "min": -1, "max": 1}):
        check_op_against_torch(*pair(lambda lib, x, kwargs=kwargs: lib.histc(x, **kwargs)), [M.astype(np.float32)], requires_grad=[False])
    for args in ((3, 3), (4, 3, 1), (3, 5, -1)):
        for name in ("tril_indices", "triu_indices"):
            check_op_against_torch(*pair(lambda lib, name=name, args=args: getattr(lib, name)(*args)), [])


@pytest.mark.parametrize("call, error, message", [
    (lambda lib: lib.mv(lib.ones(3, 4), lib.ones(3)), distrain.ShapeError, r"\(3, 4\) and \(3,\)"),
    (lambda lib: lib.tensordot(lib.ones(3, 4), lib.ones(3, 4), dims=([1], [1, 0])), distrain.ShapeError, "pair up"),
    (lambda lib: lib.cross(lib.ones(3, 4), lib.ones(3, 4), dim=1), distrain.ShapeError, "size 3 at dim 1"),
    (lambda lib: lib.cdist(lib.ones(3, 4), lib.ones(2, 5)), distrain.ShapeError, "same M"),
    (lambda lib: lib.bincount(lib.tensor([1, -1])), distrain.ArgumentError, "non-negative"),
    (lambda lib: lib.bucketize(lib.ones(3), lib.ones(2, 2)), distrain.ShapeError, "1-D"),
    (lambda lib: lib.median(lib.ones(3, 4), dim=2), distrain.ShapeError, "dim 2 is out of range"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(distrain)
    with pytest.raises((RuntimeError, IndexError)):
        call(torch)
