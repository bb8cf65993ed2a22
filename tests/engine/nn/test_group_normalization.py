"""GroupNorm, InstanceNorm1d/2d and their functional forms against torch: outputs, input and parameter gradients,
running statistics in training and their use in eval, unbatched inputs, repr, second derivatives and errors."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, check_op_against_torch, check_second_order_against_torch
from .module_oracle import assert_same_state, check_module_against_torch, random_input, twins

# id -> (layer class name, args, kwargs, input shape)
CASES = {
    "group_norm": ("GroupNorm", (2, 6), {}, (3, 6, 4, 5)),
    "group_norm_one_group": ("GroupNorm", (1, 4), {}, (2, 4, 3)),
    "group_norm_per_channel": ("GroupNorm", (4, 4), {"eps": 1e-3}, (2, 4, 5)),
    "group_norm_2d_input": ("GroupNorm", (3, 6), {}, (4, 6)),
    "group_norm_no_affine": ("GroupNorm", (2, 4), {"affine": False}, (2, 4, 3, 3)),
    "group_norm_no_bias": ("GroupNorm", (2, 4), {"bias": False}, (2, 4, 3, 3)),
    "instance_norm2d": ("InstanceNorm2d", (3,), {}, (2, 3, 4, 5)),
    "instance_norm2d_affine": ("InstanceNorm2d", (3,), {"affine": True}, (2, 3, 4, 5)),
    "instance_norm2d_running": ("InstanceNorm2d", (3,), {"track_running_stats": True, "momentum": 0.3}, (2, 3, 4, 5)),
    "instance_norm2d_cumulative": ("InstanceNorm2d", (3,), {"track_running_stats": True, "momentum": None,
                                                            "affine": True}, (2, 3, 4, 5)),
    "instance_norm2d_unbatched": ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, (3, 4, 5)),
    "instance_norm1d": ("InstanceNorm1d", (4,), {"affine": True}, (2, 4, 6)),
    "instance_norm1d_unbatched": ("InstanceNorm1d", (4,), {"track_running_stats": True}, (4, 6)),
}


def _layers(case, dtype, device):
    cls, args, kwargs, shape = CASES[case]
    d, t = twins(getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs), dtype, device)
    for layer in (d, t):  # random affine parameters, so that their gradients are not those of ones and zeros
        for name, param in layer.named_parameters():
            values = np.random.default_rng(len(name)).uniform(0.5, 1.5, tuple(param.shape))
            param.data.copy_(distrain.tensor(values, device=device).to(param.dtype) if layer is d
                             else torch.tensor(values, dtype=param.dtype))
    return d, t, shape


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_training_step_matches_torch(case, dtype, device):
    d, t, shape = _layers(case, dtype, device)
    for seed in range(2):  # two steps: running statistics accumulate
        check_module_against_torch(d, t, [random_input(shape, seed=seed, scale=2.0) + 1.0], dtype, device,
                                   atol=1e-5 if dtype == np.float32 else None)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] != "GroupNorm"])
def test_eval_matches_torch(case, device):
    d, t, shape = _layers(case, np.float64, device)
    check_module_against_torch(d, t, [random_input(shape, seed=3, scale=2.0) + 1.0], np.float64, device)
    d.eval(), t.eval()
    check_module_against_torch(d, t, [random_input(shape, seed=4)], np.float64, device)
    assert_same_state(d, t)


@pytest.mark.parametrize("case", list(CASES))
def test_repr_and_state_names_match_torch(case):
    cls, args, kwargs, _ = CASES[case]
    d, t = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(d) == repr(t)
    assert list(d.state_dict()) == list(t.state_dict())


def test_functional_forms_match_torch(device):
    rng = np.random.default_rng(5)
    x, weight, bias = rng.standard_normal((2, 6, 3, 3)), rng.uniform(0.5, 1.5, 6), rng.standard_normal(6)
    check_op_against_torch(lambda x, w, b: F.group_norm(x, 3, w, b, eps=1e-4),
                           lambda x, w, b: torch.nn.functional.group_norm(x, 3, w, b, eps=1e-4),
                           [x, weight, bias], FLOAT_DTYPES, device, atol=1e-5)
    check_op_against_torch(lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
                           lambda x, w, b: torch.nn.functional.instance_norm(x, weight=w, bias=b),
                           [x, weight, bias], FLOAT_DTYPES, device, atol=1e-5)


def test_second_derivatives_match_torch(device):
    rng = np.random.default_rng(6)
    x, weight, bias = rng.standard_normal((2, 4, 3)), rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    check_second_order_against_torch(lambda x, w, b: F.group_norm(x, 2, w, b).tanh(),
                                     lambda x, w, b: torch.nn.functional.group_norm(x, 2, w, b).tanh(),
                                     [x, weight, bias], np.float64, device)


def test_instance_norm_without_affine_warns_like_torch_on_a_channel_mismatch():
    x = random_input((2, 5, 4, 4))
    with pytest.warns(UserWarning, match="does not match num_features"):
        expected = torch.nn.InstanceNorm2d(3)(torch.tensor(x))
    with pytest.warns(UserWarning, match="does not match num_features"):
        actual = nn.InstanceNorm2d(3)(distrain.tensor(x))
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("call, message", [
    (lambda: nn.GroupNorm(4, 6), r"num_channels \(6\) must be divisible by num_groups \(4\)"),
    (lambda: nn.GroupNorm(2, 4)(distrain.randn(2, 6, 3)), r"GroupNorm\(2, 4\): expected input \(N, 4, \*\)"),
    (lambda: F.group_norm(distrain.randn(2, 6, 3), 4), r"num_groups \(4\) must divide the number of channels \(6\)"),
    (lambda: F.group_norm(distrain.randn(2, 6, 3), 2, distrain.ones(5)), r"weight must have shape \(6,\)"),
    (lambda: nn.InstanceNorm2d(3, affine=True)(distrain.randn(2, 4, 3, 3)), "input has 4 channels"),
    (lambda: nn.InstanceNorm2d(3)(distrain.randn(2, 3)), r"expected a 4-D \(batched\) or 3-D"),
    (lambda: nn.InstanceNorm1d(3)(distrain.randn(2, 3, 1)), "more than 1 spatial element"),
    (lambda: F.instance_norm(distrain.randn(2, 3, 4), distrain.zeros(2), distrain.ones(3)),
     r"running_mean must have shape \(3,\)"),
], ids=["groups_divide", "group_norm_channels", "functional_groups", "functional_weight", "instance_channels",
        "instance_rank", "instance_one_position", "running_mean_shape"])
def test_bad_shapes_are_refused_naming_them(call, message):
    with pytest.raises(distrain.ShapeError, match=message):
        call()
