"""Activation modules (ReLU, LeakyReLU, GELU, Sigmoid, Tanh, Softmax, LogSoftmax) and Dropout against torch.nn."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, assert_close, random_array, to_distrain, to_numpy
from .module_oracle import check_module_against_torch, twins

# id -> (module factory taking the library's nn, input shape)
ACTIVATION_MODULES = {
    "ReLU": (lambda lib: lib.ReLU(), (3, 4)),
    "LeakyReLU": (lambda lib: lib.LeakyReLU(), (3, 4)),
    "LeakyReLU_0.2": (lambda lib: lib.LeakyReLU(0.2), (2, 3, 4)),
    "GELU": (lambda lib: lib.GELU(), (3, 4)),
    "GELU_tanh": (lambda lib: lib.GELU(approximate="tanh"), (3, 4)),
    "Sigmoid": (lambda lib: lib.Sigmoid(), (3, 4)),
    "Tanh": (lambda lib: lib.Tanh(), (5,)),
    "Softmax_dim1": (lambda lib: lib.Softmax(dim=1), (3, 4)),
    "Softmax_dim0": (lambda lib: lib.Softmax(dim=0), (3, 4)),
    "Softmax_dim_last": (lambda lib: lib.Softmax(dim=-1), (2, 3, 4)),
    "LogSoftmax_dim1": (lambda lib: lib.LogSoftmax(dim=1), (3, 4)),
    "LogSoftmax_dim_last": (lambda lib: lib.LogSoftmax(dim=-1), (2, 3, 4)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATION_MODULES))
def test_activation_module_matches_torch(name, dtype, device):
    factory, shape = ACTIVATION_MODULES[name]
    d, t = twins(factory(nn), factory(torch.nn), dtype, device)
    x = random_array(np.random.default_rng(0), shape, "nonzero") * 2
    check_module_against_torch(d, t, [x], dtype, device)


@pytest.mark.parametrize("name", list(ACTIVATION_MODULES))
def test_activation_module_repr_matches_torch(name):
    factory, _ = ACTIVATION_MODULES[name]
    assert repr(factory(nn)) == repr(factory(torch.nn))


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4), (2, 3, 2, 2)], ids=str)
@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax"])
def test_softmax_module_without_dim_uses_torch_legacy_rule(cls, shape):
    # torch warns (implicit dim is deprecated); distrain follows the same rule with the same warning
    x = np.random.default_rng(1).standard_normal(shape)
    d = getattr(nn, cls)()
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        expected = getattr(torch.nn, cls)()(torch.tensor(x))
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        actual = d(to_distrain(x))
    assert_close(actual, expected)


def test_relu_inplace_overwrites_its_input(device):
    x = to_distrain(np.array([-1.0, 2.0, -3.0]), device)
    out = nn.ReLU(inplace=True)(x)
    np.testing.assert_array_equal(x.cpu().numpy(), [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(out.cpu().numpy(), [0.0, 2.0, 0.0])
    assert repr(nn.ReLU(inplace=True)) == repr(torch.nn.ReLU(inplace=True))


# --- Dropout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_scaling_and_gradient(p, device):
    distrain.manual_seed(0)
    n = 200_000
    x = to_distrain(np.random.default_rng(0).uniform(0.5, 1.5, n), device, requires_grad=True)
    layer = nn.Dropout(p)
    out = layer(x)
    y = to_numpy(out)
    kept = y != 0
    # fraction zeroed within 5 standard deviations of p
    assert abs((1 - kept.mean()) - p) < 5 * np.sqrt(p * (1 - p) / n)
    # kept values scaled by 1/(1-p)
    np.testing.assert_allclose(y[kept], to_numpy(x)[kept] / (1 - p), rtol=1e-6)
    # gradient is the scaled mask times the upstream gradient
    upstream = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    out.backward(to_distrain(upstream, device))
    np.testing.assert_allclose(to_numpy(x.grad), upstream * kept / (1 - p), rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_dropout_keeps_dtype_and_shape(dtype, device):
    x = to_distrain(np.ones((3, 4, 5), dtype=dtype), device)
    out = nn.Dropout(0.3)(x)
    assert out.dtype == x.dtype and tuple(out.shape) == (3, 4, 5)


def test_dropout_eval_is_identity(device):
    layer = nn.Dropout(0.5).eval()
    x = to_distrain(np.random.default_rng(2).standard_normal((4, 5)), device, requires_grad=True)
    out = layer(x)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x))
    out.sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), np.ones((4, 5)))
    assert F.dropout(x, 0.5, training=False) is x or np.array_equal(to_numpy(F.dropout(x, 0.5, training=False)),
                                                                     to_numpy(x))


def test_dropout_p0_is_identity_and_p1_zeroes_everything(device):
    x = to_distrain(np.random.default_rng(3).standard_normal((4, 5)), device, requires_grad=True)
    np.testing.assert_array_equal(to_numpy(nn.Dropout(0.0)(x)), to_numpy(x))
    out = nn.Dropout(1.0)(x)
    np.testing.assert_array_equal(to_numpy(out), np.zeros((4, 5)))
    assert np.all(np.isfinite(to_numpy(out)))
    out.sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), np.zeros((4, 5)))
    # torch agrees on both ends
    t = torch.ones(4, 5)
    assert torch.equal(torch.nn.Dropout(1.0)(t), torch.zeros(4, 5)) and torch.equal(torch.nn.Dropout(0.0)(t), t)


def test_dropout_is_reproducible_with_manual_seed(device):
    x = to_distrain(np.ones((50, 40)), device)
    distrain.manual_seed(1234)
    first = to_numpy(nn.Dropout(0.5)(x))
    second = to_numpy(nn.Dropout(0.5)(x))
    distrain.manual_seed(1234)
    again = to_numpy(nn.Dropout(0.5)(x))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second), "two draws after one seed should differ"


def test_dropout_follows_train_and_eval_of_a_parent(device):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9))
    x = to_distrain(np.ones((64, 4), np.float32), device)
    model.eval()
    assert not model[1].training
    np.testing.assert_allclose(to_numpy(model(x)), to_numpy(model[0](x)), rtol=1e-6)
    model.train()
    assert model[1].training
    assert np.mean(to_numpy(model(x)) == 0) > 0.5


def test_dropout_rejects_a_probability_outside_0_1():
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError):
            nn.Dropout(p)
        with pytest.raises(ValueError):
            torch.nn.Dropout(p)


def test_dropout_repr_matches_torch():
    assert repr(nn.Dropout(0.25)) == repr(torch.nn.Dropout(0.25))


def test_leaky_relu_inplace_overwrites_its_input_like_torch(device):
    inputs = ((torch, torch.tensor([-1.0, 2.0])), (distrain, to_distrain(np.array([-1.0, 2.0], np.float32), device)))
    for lib, x in inputs:
        out = lib.nn.LeakyReLU(0.5, inplace=True)(x)
        np.testing.assert_array_equal(to_numpy(x), [-0.5, 2.0], err_msg=lib.__name__)
        np.testing.assert_array_equal(to_numpy(out), [-0.5, 2.0], err_msg=lib.__name__)
    assert repr(nn.LeakyReLU(0.2, inplace=True)) == repr(torch.nn.LeakyReLU(0.2, inplace=True))


def test_dropout_inplace_overwrites_its_input(device):
    distrain.manual_seed(3)
    x = to_distrain(np.ones(1000, dtype=np.float32), device)
    out = nn.Dropout(0.5, inplace=True)(x)
    np.testing.assert_array_equal(to_numpy(x), to_numpy(out))
    assert set(np.unique(to_numpy(x))) == {0.0, 2.0}
    assert repr(nn.Dropout(0.2, inplace=True)) == repr(torch.nn.Dropout(0.2, inplace=True))
