"""Conv2d against torch.nn.Conv2d with the same weights: outputs, input and parameter gradients."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, check_second_order_against_torch
from .module_oracle import check_module_against_torch, random_input, twins

# id -> (Conv2d args, Conv2d kwargs, input shape)
CONV_CASES = {
    "plain": ((3, 4, 3), {}, (2, 3, 7, 7)),
    "stride2": ((3, 4, 3), {"stride": 2}, (2, 3, 8, 7)),
    "stride_pair": ((3, 4, 3), {"stride": (2, 1)}, (2, 3, 7, 6)),
    "padding1": ((3, 4, 3), {"padding": 1}, (2, 3, 5, 6)),
    "padding_pair": ((3, 4, 3), {"padding": (2, 0)}, (2, 3, 5, 6)),
    "padding_same": ((3, 4, 3), {"padding": "same"}, (2, 3, 5, 6)),
    "padding_same_even_kernel": ((3, 4, (2, 4)), {"padding": "same"}, (2, 3, 5, 6)),
    "padding_same_dilated": ((3, 4, 3), {"padding": "same", "dilation": 2}, (1, 3, 7, 6)),
    "padding_valid": ((3, 4, 3), {"padding": "valid"}, (2, 3, 5, 6)),
    "dilation2": ((3, 4, 3), {"dilation": 2}, (2, 3, 7, 8)),
    "dilation_pair_stride_padding": ((3, 4, 3), {"dilation": (2, 1), "stride": 2, "padding": 1}, (2, 3, 8, 7)),
    "groups2": ((4, 6, 3), {"groups": 2}, (2, 4, 5, 5)),
    "depthwise": ((4, 4, 3), {"groups": 4, "padding": 1}, (2, 4, 5, 5)),
    "depthwise_multiplier": ((3, 6, 3), {"groups": 3}, (2, 3, 5, 5)),
    "no_bias": ((3, 4, 3), {"bias": False}, (2, 3, 5, 5)),
    "non_square_kernel": ((3, 4, (2, 3)), {}, (2, 3, 6, 7)),
    "non_square_everything": ((2, 3, (3, 1)), {"stride": (1, 2), "padding": (1, 0)}, (2, 2, 5, 7)),
    "kernel_1x1": ((3, 5, 1), {}, (2, 3, 4, 4)),
    "kernel_covers_input": ((3, 2, (4, 5)), {}, (2, 3, 4, 5)),
    "unbatched": ((3, 4, 3), {"padding": 1}, (3, 5, 6)),
    "unbatched_groups": ((4, 2, 3), {"groups": 2}, (4, 5, 5)),
}


# torch warns (once per process) that 'same' padding with an even kernel copies the input
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_matches_torch(case, dtype, device):
    args, kwargs, shape = CONV_CASES[case]
    d, t = twins(nn.Conv2d(*args, **kwargs), torch.nn.Conv2d(*args, **kwargs), dtype, device)
    check_module_against_torch(d, t, [random_input(shape)], dtype, device, atol=1e-5 if dtype == np.float32 else None)


@pytest.mark.parametrize("case", ["plain", "padding_same", "groups2", "unbatched", "non_square_kernel"])
def test_conv2d_weight_shape_and_repr_match_torch(case):
    args, kwargs, _ = CONV_CASES[case]
    d, t = nn.Conv2d(*args, **kwargs), torch.nn.Conv2d(*args, **kwargs)
    assert tuple(d.weight.shape) == tuple(t.weight.shape)
    assert (d.bias is None) == (t.bias is None)
    assert repr(d) == repr(t)


def test_conv2d_rejects_groups_that_do_not_divide_channels():
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, groups=2)


def test_conv2d_rejects_a_wrong_channel_count():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(distrain.ShapeError):
        conv(distrain.randn(2, 5, 6, 6))


def test_conv2d_same_padding_with_stride_is_refused_like_torch():
    with pytest.raises(ValueError):
        torch.nn.Conv2d(3, 4, 3, padding="same", stride=2)
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, padding="same", stride=2)


# (conv2d kwargs, input shape, weight shape)
SECOND_ORDER_CASES = {
    "plain": ({}, (2, 2, 5, 5), (3, 2, 3, 3)),
    "stride_padding_dilation": ({"stride": 2, "padding": 1, "dilation": (1, 2)}, (1, 2, 6, 7), (2, 2, 3, 2)),
    "groups": ({"groups": 2, "padding": "same"}, (1, 4, 4, 4), (4, 2, 3, 3)),
}


@pytest.mark.parametrize("case", list(SECOND_ORDER_CASES))
def test_conv2d_second_derivatives(case, device):
    kwargs, x_shape, w_shape = SECOND_ORDER_CASES[case]
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape) * 0.5, rng.standard_normal(w_shape[0])]
    # tanh after the convolution: conv is bilinear, so d2/dx dw is the interesting part, and tanh adds curvature
    check_second_order_against_torch(lambda x, w, b: F.conv2d(x, w, b, **kwargs).tanh(),
                                     lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kwargs).tanh(),
                                     arrays, np.float64, device)


def test_conv2d_without_bias_second_derivatives(device):
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((1, 2, 4, 5)), rng.standard_normal((3, 2, 2, 3)) * 0.5]
    check_second_order_against_torch(lambda x, w: F.conv2d(x, w, None, padding=1).tanh(),
                                     lambda x, w: torch.nn.functional.conv2d(x, w, None, padding=1).tanh(),
                                     arrays, np.float64, device)
