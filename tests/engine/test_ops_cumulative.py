"""cumsum, cumprod, cummax, cummin and logcumsumexp against PyTorch: every dim, dtype= and integer
inputs (int64 results), inputs with zeros (cumprod's exact gradient) and ties (cummax's index),
second order, and the error for a bad dim."""
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

RNG = np.random.default_rng(3)
X = RNG.uniform(0.5, 1.5, (3, 4, 5)) * RNG.choice([-1.0, 1.0], (3, 4, 5))
WITH_ZEROS = X.copy()
WITH_ZEROS[0, 1, 2] = WITH_ZEROS[1, 3, 0] = WITH_ZEROS[1, 3, 3] = WITH_ZEROS[2, 0, 4] = 0.0

OPS = {
    "cumsum_dim0": lambda lib, x: lib.cumsum(x, 0),
    "cumsum_dim_neg_method": lambda lib, x: x.cumsum(-1),
    "cumsum_kw": lambda lib, x: x.cumsum(dim=1),
    "cumsum_dtype": lambda lib, x: lib.cumsum(x, 1, dtype=lib.float64),
    "cumprod_dim0": lambda lib, x: lib.cumprod(x, 0),
    "cumprod_dim_neg_method": lambda lib, x: x.cumprod(-1),
    "cumprod_dim1": lambda lib, x: x.cumprod(dim=1),
    "scalar": lambda lib, x: lib.cumprod(x[0, 0, 0], 0) + lib.cumsum(x[0, 0, 1], -1),
    "cummax": lambda lib, x: lib.cummax(x, 1),
    "cummin_method": lambda lib, x: x.cummin(dim=-1),
    "cummin_values": lambda lib, x: x.cummin(dim=-1).values * 1.0,
    "cummax_rounded_ties": lambda lib, x: (x * 2).round().cummax(0),
    "cummax_scalar": lambda lib, x: lib.cummax(x[0, 0, 0], 0),
    "logcumsumexp": lambda lib, x: lib.logcumsumexp(x * 50, 2),
    "logcumsumexp_method": lambda lib, x: x.logcumsumexp(dim=0),
}


@pytest.mark.parametrize("data", [X, WITH_ZEROS], ids=["nonzero", "zeros"])
@pytest.mark.parametrize("name", OPS)
def test_against_torch(name, data):
    check_op_against_torch(*pair(OPS[name]), [data], FLOAT_DTYPES)


@pytest.mark.parametrize("data", [X, WITH_ZEROS], ids=["nonzero", "zeros"])
@pytest.mark.parametrize("name", ["cumsum_dim0", "cumprod_dim_neg_method", "cumprod_dim1", "cummin_values",
                                  "logcumsumexp_method"])
def test_gradients_of_gradients(name, data):
    check_finite_differences(pair(OPS[name])[0], [data])
    check_second_order_against_torch(*pair(OPS[name]), [data])


@pytest.mark.parametrize("array", [np.arange(12).reshape(3, 4), np.arange(12).reshape(3, 4).astype(np.int32),
                                   np.arange(12).reshape(3, 4) % 3 == 0])
def test_integers_and_bools_accumulate_in_int64(array):
    for fn in (lambda lib, x: lib.cumsum(x, 1), lambda lib, x: x.cumprod(0)):
        check_op_against_torch(*pair(fn), [array])


def test_bad_dim_is_named():
    with pytest.raises(distrain.ShapeError, match="cumsum: dim 3 is out of range"):
        distrain.cumsum(to_distrain(X), 3)
    with pytest.raises(IndexError):
        torch.cumsum(to_torch(X), 3)
