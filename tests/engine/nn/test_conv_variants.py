"""Conv1d, ConvTranspose2d and ConvTranspose1d against torch.nn with the same weights (outputs, input and parameter
gradients, repr), their functional forms, second derivatives, output_size, and the errors for bad shapes."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, check_second_order_against_torch
from .module_oracle import check_module_against_torch, random_input, twins

# id -> (layer class name, args, kwargs, input shape)
CASES = {
    "conv1d_plain": ("Conv1d", (3, 4, 3), {}, (2, 3, 9)),
    "conv1d_stride_padding_dilation": ("Conv1d", (3, 4, 3), {"stride": 2, "padding": 2, "dilation": 2}, (2, 3, 11)),
    "conv1d_groups": ("Conv1d", (4, 6, 3), {"groups": 2, "bias": False}, (2, 4, 8)),
    "conv1d_same": ("Conv1d", (3, 4, 4), {"padding": "same"}, (2, 3, 7)),
    "conv1d_valid": ("Conv1d", (3, 4, 2), {"padding": "valid"}, (2, 3, 7)),
    "conv1d_unbatched": ("Conv1d", (3, 2, 3), {"padding": 1}, (3, 6)),
    "convT2d_plain": ("ConvTranspose2d", (3, 4, 3), {}, (2, 3, 4, 5)),
    "convT2d_stride_padding": ("ConvTranspose2d", (3, 4, 3), {"stride": 2, "padding": 1}, (2, 3, 4, 5)),
    "convT2d_output_padding": ("ConvTranspose2d", (3, 4, 3), {"stride": 2, "padding": 1, "output_padding": 1},
                               (2, 3, 4, 5)),
    "convT2d_non_square": ("ConvTranspose2d", (3, 2, (2, 3)), {"stride": (2, 3), "padding": (0, 1),
                                                               "output_padding": (1, 2)}, (2, 3, 3, 4)),
    "convT2d_dilation": ("ConvTranspose2d", (3, 4, 3), {"dilation": 2, "stride": 2, "output_padding": 1},
                         (1, 3, 4, 4)),
    "convT2d_output_padding_beyond_stride": ("ConvTranspose2d", (3, 2, 3), {"stride": (1, 2), "dilation": 3,
                                                                          "output_padding": (2, 2), "padding": 1},
                                             (1, 3, 4, 3)),
    "convT2d_groups": ("ConvTranspose2d", (4, 6, 3), {"groups": 2, "stride": 2}, (2, 4, 3, 3)),
    "convT2d_depthwise_no_bias": ("ConvTranspose2d", (4, 4, 2), {"groups": 4, "bias": False, "stride": 2},
                                  (2, 4, 3, 3)),
    "convT2d_unbatched": ("ConvTranspose2d", (3, 4, 3), {"stride": 2}, (3, 4, 4)),
    "convT1d": ("ConvTranspose1d", (3, 4, 3), {"stride": 3, "padding": 1, "output_padding": 2}, (2, 3, 5)),
    "convT1d_groups_dilation": ("ConvTranspose1d", (4, 2, 3), {"groups": 2, "dilation": 2}, (2, 4, 5)),
}


# torch warns (once per process) that 'same' padding with an even kernel copies the input
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_layer_matches_torch(case, dtype, device):
    cls, args, kwargs, shape = CASES[case]
    d, t = twins(getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs), dtype, device)
    check_module_against_torch(d, t, [random_input(shape)], dtype, device, atol=1e-5 if dtype == np.float32 else None)


@pytest.mark.parametrize("case", list(CASES))
def test_parameters_and_repr_match_torch(case):
    cls, args, kwargs, _ = CASES[case]
    d, t = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert [(name, tuple(p.shape)) for name, p in d.named_parameters()] == \
        [(name, tuple(p.shape)) for name, p in t.named_parameters()]
    assert repr(d) == repr(t)


def test_initialisation_follows_torch_bounds():
    # kaiming_uniform(a=sqrt(5)) on the weight as stored: bound 1/sqrt(fan_in), fan_in = weight.shape[1] * kernel
    layer = nn.ConvTranspose2d(16, 8, 3)
    bound = 1 / np.sqrt(8 * 9)
    for param in (layer.weight, layer.bias):
        values = param.detach().numpy()
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.8 * bound


@pytest.mark.parametrize("output_size", [(9, 11), (10, 12), [2, 3, 10, 11]], ids=str)
def test_conv_transpose_output_size_matches_torch(output_size):
    d, t = twins(nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), torch.nn.ConvTranspose2d(3, 2, 3, stride=2,
                                                                                                 padding=1))
    x = random_input((2, 3, 5, 6))
    expected = t(torch.tensor(x), output_size=output_size)
    actual = d(distrain.tensor(x), output_size=output_size)
    np.testing.assert_allclose(actual.detach().numpy(), expected.detach().numpy(), rtol=1e-7, atol=1e-10)


def test_conv_transpose_unreachable_output_size_is_refused():
    layer = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    with pytest.raises(ValueError, match="output_size.*9 to 10"):
        layer(distrain.randn(2, 3, 5, 6), output_size=(11, 11))


# (function name, kwargs, input shape, weight shape)
FUNCTIONAL = {
    "conv1d": ("conv1d", {"stride": 2, "padding": 1, "groups": 2}, (2, 4, 7), (6, 2, 3)),
    "conv_transpose2d": ("conv_transpose2d", {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2},
                         (1, 4, 3, 3), (4, 3, 3, 3)),
    "conv_transpose1d": ("conv_transpose1d", {"stride": 2, "dilation": 2}, (2, 3, 4), (3, 2, 3)),
}


@pytest.mark.parametrize("case", list(FUNCTIONAL))
def test_functional_second_derivatives_match_torch(case, device):
    name, kwargs, x_shape, w_shape = FUNCTIONAL[case]
    out_channels = w_shape[0] if name == "conv1d" else w_shape[1] * kwargs.get("groups", 1)
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape) * 0.5, rng.standard_normal(out_channels)]
    check_second_order_against_torch(lambda x, w, b: getattr(F, name)(x, w, b, **kwargs).tanh(),
                                     lambda x, w, b: getattr(torch.nn.functional, name)(x, w, b, **kwargs).tanh(),
                                     arrays, np.float64, device)


@pytest.mark.parametrize("call, message", [
    (lambda: nn.Conv1d(3, 4, 3)(distrain.randn(2, 5, 8)), r"conv1d: input of shape \(2, 5, 8\) has 5 channels"),
    (lambda: nn.Conv1d(3, 4, 3)(distrain.randn(2, 3, 4, 4)), r"conv1d: expected input \(N, C, L\)"),
    (lambda: F.conv1d(distrain.randn(2, 3, 8), distrain.randn(4, 3, 3, 3)), "conv1d: weight must be 3-D"),
    (lambda: nn.ConvTranspose2d(3, 4, 3)(distrain.randn(2, 5, 4, 4)),
     r"conv_transpose2d: input has 5 channels, weight \(3, 4, 3, 3\) expects 3"),
    (lambda: F.conv_transpose2d(distrain.randn(2, 3, 4, 4), distrain.randn(3, 4, 3, 3), distrain.randn(3)),
     r"conv_transpose2d: bias must have shape \(4,\)"),
    (lambda: F.conv_transpose2d(distrain.randn(2, 3, 4), distrain.randn(3, 4, 3)), "weight must be 4-D"),
    (lambda: F.conv_transpose2d(distrain.randn(1, 3, 4, 4), distrain.randn(3, 4, 3, 3), stride=2, output_padding=2),
     "output_padding"),
    (lambda: F.conv_transpose2d(distrain.randn(1, 3, 1, 1), distrain.randn(3, 4, 1, 1), padding=1),
     "empty output"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, groups=2), "divisible by groups"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, padding="same"), "padding must be an int"),
    (lambda: nn.Conv1d(3, 4, (3, 3)), "kernel_size must be an int or a tuple of 1 int"),
], ids=["conv1d_channels", "conv1d_rank", "conv1d_weight_rank", "convT_channels", "convT_bias", "convT_weight_rank",
        "convT_output_padding", "convT_empty", "convT_groups", "convT_same", "conv1d_kernel_pair"])
def test_bad_shapes_and_options_are_refused_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mixed_dtypes_are_refused():
    with pytest.raises(TypeError, match="conv_transpose2d: expected input, weight"):
        F.conv_transpose2d(distrain.randn(1, 3, 4, 4, dtype=distrain.float64), distrain.randn(3, 4, 3, 3))
