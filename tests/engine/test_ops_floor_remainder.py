"""floor division and remainder (`//`, `%`) against torch, including negative operands and gradients."""
import numpy as np
import pytest
import torch

import distrain


@pytest.mark.parametrize("dtype", ["int64", "float64"])
def test_floor_divide_and_remainder_match_torch_with_negative_operands(dtype):
    a = np.array([7, -7, 7, -7, 0, 5], dtype=dtype)
    b = np.array([2, 2, -2, -2, 3, 5], dtype=dtype)
    da, db, ta, tb = distrain.tensor(a), distrain.tensor(b), torch.tensor(a), torch.tensor(b)
    np.testing.assert_array_equal((da // db).numpy(), (ta // tb).numpy())
    np.testing.assert_array_equal((da % db).numpy(), (ta % tb).numpy())
    np.testing.assert_array_equal((da % 3).numpy(), (ta % 3).numpy())
    np.testing.assert_array_equal((10 // da[:4]).numpy(), (10 // ta[:4]).numpy())
    np.testing.assert_array_equal(distrain.remainder(da, -3).numpy(), torch.remainder(ta, -3).numpy())


def test_remainder_gradients_match_torch():
    a, b = np.array([7.5, -7.25, 3.0]), np.array([2.0, 2.5, -4.0])
    da, db = distrain.tensor(a, requires_grad=True), distrain.tensor(b, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (da % db).sum().backward()
    (ta % tb).sum().backward()
    np.testing.assert_allclose(da.grad.numpy(), ta.grad.numpy())
    np.testing.assert_allclose(db.grad.numpy(), tb.grad.numpy())
