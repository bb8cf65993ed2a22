"""Forms of existing ops that everyday PyTorch programs use, against PyTorch: where with numbers and
broadcasting, clamp with tensor bounds (gradients to the bounds too), cat/stack of mixed dtypes,
amax/amin over several dims, argmax/argmin variants, std/var with correction."""
import numpy as np
import pytest
import torch

import distrain

from .oracle import FLOAT_DTYPES, check_finite_differences, check_op_against_torch, pair

RNG = np.random.default_rng(7)
X = RNG.standard_normal((3, 4, 5))
ROW = RNG.standard_normal((5,))
LOW = -np.abs(RNG.standard_normal((4, 5))) * 0.5
HIGH = np.abs(RNG.standard_normal((5,))) * 0.5

FORMS = {
    "where_two_numbers": (lambda lib, x: lib.where(x > 0, 1.0, 0.0), [X]),
    "where_two_ints": (lambda lib, x: lib.where(x > 0, 1, -1), [X]),
    "where_two_bools": (lambda lib, x: lib.where(x > 0, True, False), [X]),
    "where_number_and_tensor": (lambda lib, x, r: lib.where(x > 0, r, 0.5), [X, ROW]),
    "where_broadcast_all": (lambda lib, x, r: lib.where(r > 0, x[:, :1], r), [X, ROW]),
    "where_method": (lambda lib, x, r: x.where(x > r, r), [X, ROW]),
    "clamp_tensor_bounds": (lambda lib, x, low, high: lib.clamp(x, low, high), [X, LOW, HIGH]),
    "clamp_tensor_min": (lambda lib, x, low: x.clamp(min=low), [X, LOW]),
    "clamp_tensor_max_method_clip": (lambda lib, x, high: x.clip(max=high), [X, HIGH]),
    "cat_mixed_float": (lambda lib, x, r: lib.cat([x[0], r[None].float()]), [X, ROW]),
    "stack_mixed": (lambda lib, x, r: lib.stack([x[0, 0], r.float()], dim=1), [X, ROW]),
    "amax_dims": (lambda lib, x: lib.amax(x, dim=(0, 2)), [X]),
    "amin_dims_keepdim": (lambda lib, x: x.amin(dim=(-1, 0), keepdim=True), [X]),
    "amax_all_dims": (lambda lib, x: x.amax(dim=(0, 1, 2)), [X]),
    "amax_dim": (lambda lib, x: x.amax(1), [X]),
    "argmax_keepdim": (lambda lib, x: lib.argmax(x, dim=1, keepdim=True), [X]),
    "argmin_all": (lambda lib, x: x.argmin(), [X]),
    "max_keepdim_indices": (lambda lib, x: x.max(dim=-1, keepdim=True).indices, [X]),
    "std_correction": (lambda lib, x: x.std(dim=1, correction=0), [X]),
    "var_correction_keepdim": (lambda lib, x: lib.var(x, dim=(0, 2), correction=2, keepdim=True), [X]),
}


@pytest.mark.parametrize("name", FORMS)
def test_forms_against_torch(name):
    fn, arrays = FORMS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


def test_clamp_with_tensor_bounds_finite_differences():
    check_finite_differences(pair(FORMS["clamp_tensor_bounds"][0])[0], FORMS["clamp_tensor_bounds"][1])


@pytest.mark.parametrize("dtypes", [(np.int64, np.float32), (np.int32, np.int64), (np.bool_, np.int32),
                                    (np.float32, np.float64), (np.bool_, np.float32)])
def test_cat_and_stack_promote_as_torch(dtypes):
    a, b = (np.arange(6).reshape(2, 3) % 2).astype(dtypes[0]), np.arange(6).reshape(2, 3).astype(dtypes[1])
    for fn in (lambda lib, x, y: lib.cat([x, y], 1), lambda lib, x, y: lib.stack([x, y]),
               lambda lib, x, y: lib.cat((y, x, y))):
        check_op_against_torch(*pair(fn), [a, b], requires_grad=[False, False])


def test_cat_gradients_return_in_each_inputs_dtype():
    x32 = distrain.ones(2, requires_grad=True)
    x64 = distrain.ones(3, dtype=distrain.float64, requires_grad=True)
    distrain.cat([x32, x64]).sum().backward()
    assert x32.grad.dtype == distrain.float32 and x64.grad.dtype == distrain.float64


def test_where_of_numbers_follows_the_default_dtype():
    previous = torch.get_default_dtype()
    try:
        distrain.set_default_dtype(distrain.float64)
        torch.set_default_dtype(torch.float64)
        check_op_against_torch(*pair(FORMS["where_two_numbers"][0]), [X], grad=False)
    finally:
        distrain.set_default_dtype(distrain.float32)
        torch.set_default_dtype(previous)
