"""The activations of nn/pointwise_activation.py and ops/activations.py against torch: modules (forward, input and
parameter gradients, repr), functional forms with their options, gradients at the kinks, second derivatives,
in-place forms, bad shapes; and softmax/log_softmax/softmin with PyTorch's deprecated implicit dim."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import (FLOAT_DTYPES, assert_close, check_finite_differences, check_op_against_torch,
                      check_second_order_against_torch, random_array, to_distrain, to_torch)
from .module_oracle import check_module_against_torch, twins

# id -> (module factory taking the library's nn, input shape)
MODULES = {
    "SiLU": (lambda lib: lib.SiLU(), (3, 4)),
    "Mish": (lambda lib: lib.Mish(), (3, 4)),
    "Softplus": (lambda lib: lib.Softplus(), (3, 4)),
    "Softplus_beta_threshold": (lambda lib: lib.Softplus(beta=2.0, threshold=1.5), (3, 4)),
    "Hardswish": (lambda lib: lib.Hardswish(), (3, 4)),
    "Hardsigmoid": (lambda lib: lib.Hardsigmoid(), (3, 4)),
    "Hardtanh": (lambda lib: lib.Hardtanh(-0.5, 0.7), (3, 4)),
    "ReLU6": (lambda lib: lib.ReLU6(), (3, 4)),
    "ELU": (lambda lib: lib.ELU(), (3, 4)),
    "ELU_alpha": (lambda lib: lib.ELU(alpha=0.3), (2, 3, 4)),
    "SELU": (lambda lib: lib.SELU(), (3, 4)),
    "CELU": (lambda lib: lib.CELU(alpha=0.25), (3, 4)),  # see the functional celu's alpha
    "Softsign": (lambda lib: lib.Softsign(), (3, 4)),
    "Tanhshrink": (lambda lib: lib.Tanhshrink(), (3, 4)),
    "LogSigmoid": (lambda lib: lib.LogSigmoid(), (3, 4)),
    "Hardshrink": (lambda lib: lib.Hardshrink(0.7), (3, 4)),
    "Softshrink": (lambda lib: lib.Softshrink(0.7), (3, 4)),
    "Threshold": (lambda lib: lib.Threshold(0.3, -2.0), (3, 4)),
    "GLU": (lambda lib: lib.GLU(), (3, 4)),
    "GLU_dim1": (lambda lib: lib.GLU(dim=1), (2, 6, 3)),
    "Softmin": (lambda lib: lib.Softmin(dim=1), (3, 4)),
    "PReLU_shared": (lambda lib: lib.PReLU(), (2, 3, 4)),
    "PReLU_per_channel": (lambda lib: lib.PReLU(3, init=0.1), (2, 3, 4, 2)),
    "PReLU_1d_input": (lambda lib: lib.PReLU(), (5,)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(MODULES))
def test_module_matches_torch(name, dtype, device):
    factory, shape = MODULES[name]
    d, t = twins(factory(nn), factory(torch.nn), dtype, device)
    x = random_array(np.random.default_rng(0), shape, "nonzero") * 3  # reaches every piece of each function
    check_module_against_torch(d, t, [x], dtype, device)


@pytest.mark.parametrize("name", list(MODULES))
def test_module_repr_matches_torch(name):
    factory, _ = MODULES[name]
    assert repr(factory(nn)) == repr(factory(torch.nn))


@pytest.mark.parametrize("cls", ["SiLU", "Mish", "Hardswish", "Hardsigmoid", "ReLU6", "ELU", "SELU", "CELU",
                                 "Hardtanh"])
def test_inplace_module_repr_and_result_match_torch(cls):
    d, t = getattr(nn, cls)(inplace=True), getattr(torch.nn, cls)(inplace=True)
    assert repr(d) == repr(t)
    x = random_array(np.random.default_rng(1), (3, 4), "nonzero") * 3
    d_x, t_x = to_distrain(x), to_torch(x)
    d_out, t_out = d(d_x), t(t_x)
    assert_close(d_x, t_x)  # the input itself was overwritten
    assert_close(d_out, t_out)


# id -> function of (library's functional namespace, x)
FUNCTIONAL = {
    "silu": lambda f, x: f.silu(x),
    "mish": lambda f, x: f.mish(x),
    "softplus": lambda f, x: f.softplus(x, beta=0.5, threshold=2.0),
    "hardswish": lambda f, x: f.hardswish(x),
    "hardsigmoid": lambda f, x: f.hardsigmoid(x),
    "hardtanh": lambda f, x: f.hardtanh(x, -2.0, 1.5),
    "relu6": lambda f, x: f.relu6(x),
    "elu": lambda f, x: f.elu(x, 0.5),
    "selu": lambda f, x: f.selu(x),
    # alpha with an exact float32 reciprocal: torch's celu backward rounds 1/alpha to float32 even in float64
    "celu": lambda f, x: f.celu(x, alpha=0.5),
    "softsign": lambda f, x: f.softsign(x),
    "tanhshrink": lambda f, x: f.tanhshrink(x),
    "logsigmoid": lambda f, x: f.logsigmoid(x),
    "hardshrink": lambda f, x: f.hardshrink(x, 1.0),
    "softshrink": lambda f, x: f.softshrink(x, lambd=1.0),
    "threshold": lambda f, x: f.threshold(x, 0.5, 3.0),
    "glu": lambda f, x: f.glu(x, 0),
    "softmin": lambda f, x: f.softmin(x, dim=-1),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional_matches_torch(name, dtype, device):
    function = FUNCTIONAL[name]
    x = random_array(np.random.default_rng(2), (4, 5), "nonzero") * 4
    check_op_against_torch(lambda x: function(F, x), lambda x: function(TF, x), [x], dtype, device)


@pytest.mark.parametrize("name", ["silu", "mish", "softplus", "elu", "celu", "selu", "logsigmoid", "softsign", "glu"])
def test_functional_second_derivatives_match_torch(name):
    function = FUNCTIONAL[name]
    x = random_array(np.random.default_rng(3), (4, 4), "nonzero") * 2
    check_second_order_against_torch(lambda x: function(F, x), lambda x: function(TF, x), [x])


@pytest.mark.parametrize("name", ["mish", "softplus", "celu", "glu", "logsigmoid"])
def test_functional_gradcheck(name):
    function = FUNCTIONAL[name]
    check_finite_differences(lambda x: function(F, x), [random_array(np.random.default_rng(4), (2, 4), "nonzero")])


# the points where a piecewise definition changes: the gradient there is PyTorch's convention
KINKS = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 25.0, -25.0])


@pytest.mark.parametrize("name", ["silu", "mish", "softplus", "hardswish", "hardsigmoid", "hardtanh", "relu6", "elu",
                                  "selu", "celu", "softsign", "logsigmoid", "hardshrink", "softshrink", "threshold"])
def test_gradient_at_the_kinks_matches_torch(name):
    function = FUNCTIONAL[name]
    check_op_against_torch(lambda x: function(F, x), lambda x: function(TF, x), [KINKS], np.float64)


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (3.0, 5.0)])
def test_softplus_is_stable_and_linear_beyond_threshold(beta, threshold):
    x = np.array([-1000.0, -30.0, 0.0, 19.0, 21.0, 1000.0], dtype=np.float32)
    check_op_against_torch(lambda x: F.softplus(x, beta, threshold), lambda x: TF.softplus(x, beta, threshold),
                           [x], np.float32)


def test_prelu_functional_with_a_per_channel_weight_matches_torch(device):
    rng = np.random.default_rng(5)
    x, weight = random_array(rng, (2, 3, 4), "nonzero"), rng.uniform(0.1, 0.5, 3)
    check_op_against_torch(F.prelu, TF.prelu, [x, weight], FLOAT_DTYPES, device)


def test_prelu_rejects_a_weight_of_the_wrong_size():
    layer = nn.PReLU(4)
    with pytest.raises(distrain.ShapeError, match=r"prelu: weight must have 1 element or one per channel \(3"):
        layer(distrain.randn(2, 3, 5))


def test_glu_rejects_an_odd_dimension():
    with pytest.raises(distrain.ShapeError, match="glu: halving dimension must be even.*size 5"):
        F.glu(distrain.randn(2, 5))


def test_bad_options_are_refused():
    with pytest.raises(distrain.ArgumentError, match="hardtanh: min_val"):
        F.hardtanh(distrain.randn(3), 1.0, -1.0)
    with pytest.raises(distrain.ArgumentError, match="celu: alpha"):
        F.celu(distrain.randn(3), 0.0)


# --- softmax family with PyTorch's deprecated implicit dim ---------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (4,), (3, 4), (2, 3, 4), (2, 3, 2, 2)], ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
def test_implicit_dim_follows_torch_with_its_warning(name, shape):
    x = np.random.default_rng(6).standard_normal(shape)
    d_x, t_x = to_distrain(x, requires_grad=True), to_torch(x, requires_grad=True)
    with pytest.warns(UserWarning, match="Implicit dimension choice for " + name) as t_record:
        expected = getattr(TF, name)(t_x)
    with pytest.warns(UserWarning, match="Implicit dimension choice for " + name) as d_record:
        actual = getattr(F, name)(d_x)
    assert str(d_record[0].message) == str(t_record[0].message)
    assert d_record[0].filename == __file__  # the warning points at the caller's line, as torch's does
    assert_close(actual, expected)
    grad = np.random.default_rng(7).standard_normal(shape)
    actual.backward(to_distrain(grad))
    expected.backward(to_torch(grad))
    assert_close(d_x.grad, t_x.grad)


def test_softmin_module_without_dim_warns_like_torch():
    x = np.random.default_rng(8).standard_normal((2, 3, 4))
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmin"):
        expected = torch.nn.Softmin()(to_torch(x))
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmin"):
        actual = nn.Softmin()(to_distrain(x))
    assert_close(actual, expected)


def test_explicit_dim_does_not_warn():
    x = distrain.randn(2, 3)
    F.softmax(x, dim=1), F.log_softmax(x, 0), F.softmin(x, -1), x.softmax(1)  # warnings are errors in the tests


# inplace=True on an intermediate of a recorded graph: the result overwrites it and the gradient is still right
IN_PLACE = {
    "silu": lambda f, y: f.silu(y, inplace=True),
    "mish": lambda f, y: f.mish(y, inplace=True),
    "hardswish": lambda f, y: f.hardswish(y, inplace=True),
    "hardsigmoid": lambda f, y: f.hardsigmoid(y, inplace=True),
    "hardtanh": lambda f, y: f.hardtanh(y, -0.5, 0.5, True),
    "relu6": lambda f, y: f.relu6(y, inplace=True),
    "elu": lambda f, y: f.elu(y, 0.7, True),
    "selu": lambda f, y: f.selu(y, inplace=True),
    "celu": lambda f, y: f.celu(y, 0.5, True),
    "threshold": lambda f, y: f.threshold(y, 0.2, -1.0, True),
}


@pytest.mark.parametrize("name", list(IN_PLACE))
def test_in_place_inside_a_graph_matches_torch(name):
    function = IN_PLACE[name]

    def run(f, x):
        y = x * 1.5
        out = function(f, y)
        return out, y

    check_op_against_torch(lambda x: run(F, x), lambda x: run(TF, x),
                           [random_array(np.random.default_rng(9), (3, 4), "nonzero") * 3])


def test_silu_backward_of_backward_matches_torch():
    check_second_order_against_torch(F.silu, TF.silu, [random_array(np.random.default_rng(10), (5,), "any")])


def test_leaky_relu_in_place_inside_a_graph_matches_torch():
    def run(f, module, x):
        y = x * 1.5
        return module(y), f.leaky_relu(y * 2.0, 0.5, True), y

    # slopes exact in float32: torch's in-place backward rounds the slope to float32 even in float64
    check_op_against_torch(lambda x: run(F, nn.LeakyReLU(0.25, inplace=True), x),
                           lambda x: run(TF, torch.nn.LeakyReLU(0.25, inplace=True), x),
                           [random_array(np.random.default_rng(11), (3, 4), "nonzero")])
