"""nn.init: each initialiser's distribution on a big tensor (bounds, mean, std), gains and fans as torch's,
and the default initialisation of Linear and Conv2d."""
import math

import numpy as np
import pytest
import scipy.stats
import torch

import distrain
import distrain.nn as nn
import distrain.nn.init as init

from ..oracle import to_numpy

SHAPE = (300, 200, 3)  # fan_in = 600, fan_out = 900: distinct, so a mode mix-up shows
FAN = {"fan_in": 600, "fan_out": 900}
STD_RTOL = 0.01  # 180,000 samples: the sample std is within ~0.2% of the true one


def _fresh(dtype=distrain.float32, shape=SHAPE):
    return distrain.empty(*shape, dtype=dtype)


def _assert_uniform(values, low, high):
    assert values.min() >= low and values.max() <= high, (values.min(), values.max(), low, high)
    width = high - low
    # the extremes reach the bounds, the mean and std are a uniform's
    assert values.min() < low + 0.001 * width and values.max() > high - 0.001 * width
    assert abs(values.mean() - (low + high) / 2) < 0.01 * width
    np.testing.assert_allclose(values.std(), width / math.sqrt(12), rtol=STD_RTOL)


def _assert_normal(values, mean, std):
    assert abs(values.mean() - mean) < 0.01 * std
    np.testing.assert_allclose(values.std(), std, rtol=STD_RTOL)
    # normal, not uniform: about 4.6% of samples beyond 2 std
    assert abs(np.mean(np.abs(values - mean) > 2 * std) - 0.0455) < 0.005


@pytest.fixture(autouse=True)
def _seeded():
    distrain.manual_seed(42)


@pytest.mark.parametrize("dtype", [distrain.float32, distrain.float64])
def test_uniform_(dtype):
    t = _fresh(dtype)
    assert init.uniform_(t, -0.5, 2.0) is t
    assert t.dtype == dtype
    _assert_uniform(to_numpy(t), -0.5, 2.0)
    _assert_uniform(to_numpy(init.uniform_(_fresh())), 0.0, 1.0)


@pytest.mark.parametrize("dtype", [distrain.float32, distrain.float64])
def test_normal_(dtype):
    t = _fresh(dtype)
    assert init.normal_(t, 1.5, 0.3) is t
    _assert_normal(to_numpy(t), 1.5, 0.3)
    _assert_normal(to_numpy(init.normal_(_fresh())), 0.0, 1.0)


@pytest.mark.parametrize("mean,std,a,b", [(0.0, 1.0, -2.0, 2.0), (0.0, 1.0, -0.5, 1.0), (1.0, 2.0, 0.0, 5.0),
                                          (0.0, 0.02, -0.04, 0.04)])
def test_trunc_normal_(mean, std, a, b):
    values = to_numpy(init.trunc_normal_(_fresh(distrain.float64), mean, std, a, b))
    assert values.min() >= a and values.max() <= b
    expected = scipy.stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    assert abs(values.mean() - expected.mean()) < 0.01 * expected.std()
    np.testing.assert_allclose(values.std(), expected.std(), rtol=STD_RTOL)
    # torch's draws obey the same law
    reference = torch.nn.init.trunc_normal_(torch.empty(SHAPE, dtype=torch.float64), mean, std, a, b,
                                            generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(values.std(), reference.std(), rtol=2 * STD_RTOL)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity,a", [("leaky_relu", 0), ("leaky_relu", math.sqrt(5)), ("leaky_relu", 0.2),
                                            ("relu", 0), ("tanh", 0), ("linear", 0), ("sigmoid", 0)], ids=str)
def test_kaiming_uniform_(mode, nonlinearity, a):
    values = to_numpy(init.kaiming_uniform_(_fresh(), a=a, mode=mode, nonlinearity=nonlinearity))
    gain = torch.nn.init.calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / FAN[mode])
    _assert_uniform(values, -bound, bound)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity,a", [("leaky_relu", 0), ("leaky_relu", 0.2), ("relu", 0), ("tanh", 0),
                                            ("selu", 0)], ids=str)
def test_kaiming_normal_(mode, nonlinearity, a):
    values = to_numpy(init.kaiming_normal_(_fresh(), a=a, mode=mode, nonlinearity=nonlinearity))
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(FAN[mode])
    _assert_normal(values, 0.0, std)


def test_kaiming_defaults_match_torch_defaults():
    # torch's defaults: a=0, mode="fan_in", nonlinearity="leaky_relu" -> gain sqrt(2)
    values = to_numpy(init.kaiming_uniform_(_fresh()))
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 600)
    _assert_uniform(values, -bound, bound)


@pytest.mark.parametrize("gain", [1.0, 5.0 / 3])
def test_xavier_uniform_(gain):
    values = to_numpy(init.xavier_uniform_(_fresh(), gain=gain))
    bound = gain * math.sqrt(6.0 / (600 + 900))
    _assert_uniform(values, -bound, bound)


@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0)])
def test_xavier_normal_(gain):
    values = to_numpy(init.xavier_normal_(_fresh(), gain=gain))
    _assert_normal(values, 0.0, gain * math.sqrt(2.0 / (600 + 900)))


def test_initialisers_fill_in_place_and_keep_parameters():
    layer = nn.Linear(30, 20)
    weight = layer.weight
    array_before = weight._data
    init.xavier_uniform_(layer.weight)
    init.zeros_(layer.bias)
    assert layer.weight is weight and weight._data is array_before
    assert weight.requires_grad and weight.grad_fn is None
    np.testing.assert_array_equal(to_numpy(layer.bias), np.zeros(20))
    init.ones_(layer.bias)
    np.testing.assert_array_equal(to_numpy(layer.bias), np.ones(20))
    init.constant_(layer.bias, 0.25)
    np.testing.assert_array_equal(to_numpy(layer.bias), np.full(20, 0.25, dtype=np.float32))
    init.eye_(layer.weight)
    np.testing.assert_array_equal(to_numpy(layer.weight), np.eye(20, 30, dtype=np.float32))


def test_initialisers_are_reproducible_with_manual_seed():
    distrain.manual_seed(7)
    first = to_numpy(init.kaiming_normal_(_fresh(shape=(20, 10))))
    distrain.manual_seed(7)
    again = to_numpy(init.kaiming_normal_(_fresh(shape=(20, 10))))
    np.testing.assert_array_equal(first, again)
    distrain.manual_seed(7)
    first_layer = to_numpy(nn.Linear(10, 20).weight)
    distrain.manual_seed(7)
    np.testing.assert_array_equal(first_layer, to_numpy(nn.Linear(10, 20).weight))


@pytest.mark.parametrize("nonlinearity,param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
    ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None),
    ("tanh", None), ("relu", None), ("selu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
    ("leaky_relu", math.sqrt(5)), ("leaky_relu", 0), ("leaky_relu", 3)], ids=str)
def test_calculate_gain_equals_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param),
                                                                     rel=1e-15)


def test_calculate_gain_rejects_unknown_names_and_bad_slopes():
    with pytest.raises(ValueError):
        init.calculate_gain("swish")
    with pytest.raises(ValueError):
        init.calculate_gain("leaky_relu", "0.1")


@pytest.mark.parametrize("fn", [init.kaiming_uniform_, init.kaiming_normal_, init.xavier_uniform_,
                                init.xavier_normal_], ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(5,), ()], ids=str)
def test_fan_needs_two_dimensions(fn, shape):
    with pytest.raises(ValueError):
        getattr(torch.nn.init, fn.__name__)(torch.empty(shape))
    with pytest.raises(distrain.ShapeError) as info:
        fn(distrain.empty(*shape))
    assert str(tuple(shape)) in str(info.value)


@pytest.mark.parametrize("shape", [(7, 3), (7, 3, 2), (4, 6, 3, 5)], ids=str)
def test_fan_in_and_fan_out_equal_torch(shape):
    assert init._calculate_fan_in_and_fan_out(distrain.empty(*shape)) == \
           torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_kaiming_rejects_an_unknown_mode():
    with pytest.raises(ValueError):
        init.kaiming_uniform_(_fresh(shape=(3, 4)), mode="fan_avg")


# --- default layer initialisation -------------------------------------------------------------

def test_linear_default_init_matches_torch():
    layer = nn.Linear(400, 500)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) gives exactly 1/sqrt(fan_in)
    _assert_uniform(to_numpy(layer.weight), -bound, bound)
    bias = to_numpy(nn.Linear(400, 20000).bias)
    _assert_uniform(bias, -bound, bound)
    torch_weight = torch.nn.Linear(400, 500).weight.detach().numpy()
    np.testing.assert_allclose(to_numpy(layer.weight).std(), torch_weight.std(), rtol=2 * STD_RTOL)


@pytest.mark.parametrize("args,kwargs,fan_in", [((8, 300, 3), {}, 72), ((8, 300, (3, 5)), {"groups": 2}, 60),
                                                ((16, 320, 3), {"groups": 16}, 9)], ids=str)
def test_conv2d_default_init_matches_torch(args, kwargs, fan_in):
    layer = nn.Conv2d(*args, **kwargs)
    reference = torch.nn.Conv2d(*args, **kwargs)
    assert torch.nn.init._calculate_fan_in_and_fan_out(reference.weight)[0] == fan_in
    bound = 1 / math.sqrt(fan_in)
    _assert_uniform(to_numpy(layer.weight), -bound, bound)
    bias = to_numpy(layer.bias)
    assert bias.min() >= -bound and bias.max() <= bound and bias.std() > 0.4 * bound
    np.testing.assert_allclose(to_numpy(layer.weight).std(), reference.weight.detach().numpy().std(),
                               rtol=2 * STD_RTOL)


def test_batch_norm_and_layer_norm_start_as_identity_affine():
    for layer in (nn.BatchNorm2d(5), nn.LayerNorm(5)):
        np.testing.assert_array_equal(to_numpy(layer.weight), np.ones(5))
        np.testing.assert_array_equal(to_numpy(layer.bias), np.zeros(5))
    bn = nn.BatchNorm1d(5)
    np.testing.assert_array_equal(to_numpy(bn.running_mean), np.zeros(5))
    np.testing.assert_array_equal(to_numpy(bn.running_var), np.ones(5))
    assert int(bn.num_batches_tracked.item()) == 0
