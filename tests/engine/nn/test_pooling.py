"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d against torch.nn: outputs, indices, gradients, second derivatives."""
import numpy as np
import pytest
import torch

import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, assert_close, check_second_order_against_torch, to_distrain, to_torch
from .module_oracle import check_module_against_torch, twins


def _distinct(shape, seed=0):
    """Inputs with no ties inside any window, so that the arg-max (and its gradient) is unique."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3.0


# id -> (MaxPool2d kwargs, input shape)
MAX_CASES = {
    "k2": ({"kernel_size": 2}, (2, 3, 6, 6)),
    "k2_odd_input": ({"kernel_size": 2}, (2, 3, 7, 5)),
    "k3_s1": ({"kernel_size": 3, "stride": 1}, (2, 2, 5, 6)),
    "k3_s2_p1": ({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 2, 7, 6)),
    "pair_kernel_stride": ({"kernel_size": (2, 3), "stride": (1, 2)}, (1, 2, 5, 7)),
    "pair_padding": ({"kernel_size": 3, "stride": 2, "padding": (1, 0)}, (1, 2, 6, 7)),
    "dilation2": ({"kernel_size": 2, "stride": 1, "dilation": 2}, (1, 2, 6, 6)),
    "dilation_pair_padding": ({"kernel_size": 3, "stride": 2, "padding": 1, "dilation": (2, 1)}, (1, 2, 8, 7)),
    "ceil_mode": ({"kernel_size": 2, "ceil_mode": True}, (2, 2, 5, 7)),
    "ceil_mode_s2_k3": ({"kernel_size": 3, "stride": 2, "ceil_mode": True}, (1, 2, 6, 8)),
    "ceil_mode_padding": ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 7)),
    "ceil_mode_dropped_window": ({"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 1, 5, 5)),
    "unbatched": ({"kernel_size": 2}, (3, 4, 6)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(MAX_CASES))
def test_max_pool2d_matches_torch(case, dtype, device):
    kwargs, shape = MAX_CASES[case]
    d, t = twins(nn.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs), dtype, device)
    check_module_against_torch(d, t, [_distinct(shape)], dtype, device)


@pytest.mark.parametrize("case", list(MAX_CASES))
def test_max_pool2d_return_indices_match_torch(case, device):
    kwargs, shape = MAX_CASES[case]
    d, t = twins(nn.MaxPool2d(**kwargs, return_indices=True), torch.nn.MaxPool2d(**kwargs, return_indices=True),
                 np.float64, device)
    d_out, t_out = check_module_against_torch(d, t, [_distinct(shape)], np.float64, device)
    assert len(d_out) == 2
    # indices: int64 flat positions in each input plane, equal to torch's
    assert_close(d_out[1], t_out[1], what="indices")


def test_max_pool2d_gradient_goes_to_one_maximum_per_window_on_ties(device):
    # all-equal windows: torch routes each window's gradient to one element; total gradient mass is preserved
    x = np.ones((1, 1, 4, 4))
    d, t = twins(nn.MaxPool2d(2), torch.nn.MaxPool2d(2), np.float64, device)
    check_module_against_torch(d, t, [x], np.float64, device)


def test_max_pool2d_with_negative_inputs_and_padding(device):
    # padding must act as -inf, not 0, or all-negative windows would return 0
    x = -np.abs(_distinct((1, 2, 5, 5))) - 1.0
    d, t = twins(nn.MaxPool2d(3, stride=2, padding=1), torch.nn.MaxPool2d(3, stride=2, padding=1), np.float64, device)
    check_module_against_torch(d, t, [x], np.float64, device)


# id -> (AvgPool2d kwargs, input shape)
AVG_CASES = {
    "k2": ({"kernel_size": 2}, (2, 3, 6, 6)),
    "k3_s2": ({"kernel_size": 3, "stride": 2}, (2, 2, 7, 8)),
    "pair_kernel_stride": ({"kernel_size": (2, 3), "stride": (1, 2)}, (1, 2, 5, 7)),
    "padding1": ({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 2, 6, 7)),
    "padding_no_count": ({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (2, 2, 6, 7)),
    "pair_padding_no_count": ({"kernel_size": (3, 2), "stride": 1, "padding": (1, 1), "count_include_pad": False},
                              (1, 2, 4, 5)),
    "ceil_mode": ({"kernel_size": 2, "ceil_mode": True}, (2, 2, 5, 7)),
    "ceil_mode_k3_s2": ({"kernel_size": 3, "stride": 2, "ceil_mode": True}, (1, 2, 6, 8)),
    "ceil_mode_padding": ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 7)),
    "ceil_mode_padding_no_count": ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                    "count_include_pad": False}, (1, 2, 6, 7)),
    "ceil_mode_dropped_window": ({"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 1, 5, 5)),
    "divisor_override": ({"kernel_size": 2, "divisor_override": 3}, (2, 2, 4, 6)),
    "divisor_override_padding_ceil": ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                       "divisor_override": 5}, (1, 2, 6, 7)),
    "unbatched": ({"kernel_size": 2, "padding": 1}, (3, 4, 6)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(AVG_CASES))
def test_avg_pool2d_matches_torch(case, dtype, device):
    kwargs, shape = AVG_CASES[case]
    d, t = twins(nn.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs), dtype, device)
    check_module_against_torch(d, t, [np.random.default_rng(1).standard_normal(shape)], dtype, device)


# id -> (output_size, input shape)
ADAPTIVE_CASES = {
    "global": (1, (2, 3, 5, 7)),
    "global_pair": ((1, 1), (2, 3, 4, 4)),
    "divisible": (2, (2, 3, 6, 4)),
    "divisible_pair": ((3, 2), (2, 2, 6, 8)),
    "non_divisible": (3, (2, 2, 7, 5)),
    "non_divisible_pair": ((4, 3), (1, 2, 7, 5)),
    "larger_than_input": ((5, 4), (1, 2, 3, 3)),
    "identity_size": ((4, 5), (1, 2, 4, 5)),
    "none_height": ((None, 2), (1, 2, 5, 6)),
    "none_width": ((3, None), (1, 2, 7, 4)),
    "unbatched": (3, (2, 7, 5)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(ADAPTIVE_CASES))
def test_adaptive_avg_pool2d_matches_torch(case, dtype, device):
    size, shape = ADAPTIVE_CASES[case]
    d, t = twins(nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size), dtype, device)
    check_module_against_torch(d, t, [np.random.default_rng(2).standard_normal(shape)], dtype, device)


@pytest.mark.parametrize("kwargs", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1},
                                    {"kernel_size": 2, "stride": 1, "dilation": 2, "ceil_mode": True}], ids=str)
def test_max_pool2d_second_derivatives(kwargs, device):
    # the square makes the second derivative nonzero; max pooling itself routes it to the arg-max
    check_second_order_against_torch(lambda x: F.max_pool2d(x * x, **kwargs),
                                     lambda x: torch.nn.functional.max_pool2d(x * x, **kwargs),
                                     [_distinct((1, 2, 5, 5), seed=4) / 3.0], np.float64, device)


@pytest.mark.parametrize("kwargs", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1,
                                                          "count_include_pad": False, "ceil_mode": True}], ids=str)
def test_avg_pool2d_second_derivatives(kwargs, device):
    rng = np.random.default_rng(5)
    check_second_order_against_torch(lambda x: F.avg_pool2d(x * x, **kwargs),
                                     lambda x: torch.nn.functional.avg_pool2d(x * x, **kwargs),
                                     [rng.standard_normal((1, 2, 5, 6))], np.float64, device)


@pytest.mark.parametrize("size", [1, 3], ids=str)
def test_adaptive_avg_pool2d_second_derivatives(size, device):
    rng = np.random.default_rng(6)
    check_second_order_against_torch(lambda x: F.adaptive_avg_pool2d(x * x, size),
                                     lambda x: torch.nn.functional.adaptive_avg_pool2d(x * x, size),
                                     [rng.standard_normal((1, 2, 5, 7))], np.float64, device)


def test_functional_max_pool2d_default_stride_is_kernel(device):
    x = _distinct((1, 1, 6, 6))
    out = F.max_pool2d(to_distrain(x, device), 3)
    assert_close(out, torch.nn.functional.max_pool2d(to_torch(x), 3))


def test_pooling_padding_larger_than_half_kernel_is_refused_like_torch():
    x = to_torch(np.zeros((1, 1, 6, 6)))
    with pytest.raises(RuntimeError):
        torch.nn.functional.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError):
        F.max_pool2d(to_distrain(np.zeros((1, 1, 6, 6))), 2, padding=2)
    with pytest.raises(ValueError):
        F.avg_pool2d(to_distrain(np.zeros((1, 1, 6, 6))), 2, padding=2)
