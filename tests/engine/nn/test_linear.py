"""Linear, Identity and Flatten against torch.nn, with the same weights."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, check_second_order_against_torch, to_distrain
from .module_oracle import check_module_against_torch, random_input, twins


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5,), (4, 5), (2, 3, 5)], ids=str)
def test_linear_matches_torch(shape, bias, dtype, device):
    d, t = twins(nn.Linear(5, 3, bias=bias), torch.nn.Linear(5, 3, bias=bias), dtype, device)
    check_module_against_torch(d, t, [random_input(shape)], dtype, device)


def test_linear_parameter_shapes_and_names():
    layer = nn.Linear(5, 3)
    assert [(n, tuple(p.shape)) for n, p in layer.named_parameters()] == [("weight", (3, 5)), ("bias", (3,))]
    assert nn.Linear(5, 3, bias=False).bias is None
    assert [n for n, _ in nn.Linear(5, 3, bias=False).named_parameters()] == ["weight"]


def test_linear_rejects_a_wrong_feature_size():
    layer = nn.Linear(5, 3)
    with pytest.raises(distrain.ShapeError):
        layer(distrain.randn(4, 6))


def test_linear_dtype_argument():
    layer = nn.Linear(5, 3, dtype=distrain.float64)
    assert layer.weight.dtype == distrain.float64 and layer.bias.dtype == distrain.float64
    assert layer(distrain.randn(2, 5, dtype=distrain.float64)).dtype == distrain.float64


@pytest.mark.parametrize("bias", [True, False])
def test_linear_second_derivatives(bias, device):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((4, 5)), rng.standard_normal((3, 5))] + ([rng.standard_normal(3)] if bias else [])
    # a nonlinearity after the layer so that the second derivative is not identically zero
    check_second_order_against_torch(lambda *a: F.linear(*a).tanh(), lambda *a: torch.nn.functional.linear(*a).tanh(),
                                     arrays, np.float64, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("start_dim,end_dim", [(1, -1), (0, -1), (1, 2), (2, 3), (-2, -1)])
def test_flatten_matches_torch(start_dim, end_dim, dtype, device):
    d, t = twins(nn.Flatten(start_dim, end_dim), torch.nn.Flatten(start_dim, end_dim), dtype, device)
    check_module_against_torch(d, t, [random_input((2, 3, 4, 5))], dtype, device)


def test_flatten_default_and_repr():
    assert tuple(nn.Flatten()(distrain.randn(2, 3, 4)).shape) == (2, 12)
    assert repr(nn.Flatten()) == repr(torch.nn.Flatten())


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_identity_passes_input_and_gradient_through(dtype, device):
    d, t = twins(nn.Identity(54, unused="argument"), torch.nn.Identity(54, unused="argument"), dtype, device)
    check_module_against_torch(d, t, [random_input((3, 4))], dtype, device)
    x = to_distrain(np.ones(3), device)
    assert d(x) is x
    assert repr(nn.Identity()) == repr(torch.nn.Identity())
