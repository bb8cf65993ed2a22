"""BatchNorm1d/2d (train and eval, running statistics over several steps) and LayerNorm against torch.nn."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, assert_close, check_second_order_against_torch, to_distrain, to_torch
from .module_oracle import assert_same_state, check_module_against_torch, twins

# id -> (class name, constructor kwargs, input shape)
BATCH_NORM_CASES = {
    "1d_2d_input": ("BatchNorm1d", {}, (6, 4)),
    "1d_3d_input": ("BatchNorm1d", {}, (3, 4, 5)),
    "2d": ("BatchNorm2d", {}, (3, 4, 3, 2)),
    "2d_momentum": ("BatchNorm2d", {"momentum": 0.3}, (2, 4, 3, 3)),
    "2d_momentum_none": ("BatchNorm2d", {"momentum": None}, (2, 4, 3, 3)),
    "1d_momentum_none": ("BatchNorm1d", {"momentum": None}, (5, 3)),
    "2d_eps": ("BatchNorm2d", {"eps": 1e-2}, (2, 3, 2, 2)),
    "2d_no_affine": ("BatchNorm2d", {"affine": False}, (2, 4, 3, 3)),
    "1d_no_affine": ("BatchNorm1d", {"affine": False}, (3, 4, 5)),
    "2d_no_running_stats": ("BatchNorm2d", {"track_running_stats": False}, (2, 4, 3, 3)),
    "2d_no_bias": ("BatchNorm2d", {"bias": False}, (2, 4, 3, 3)),  # torch 2.13's keyword-only bias flag
    "1d_no_running_stats_no_affine": ("BatchNorm1d", {"track_running_stats": False, "affine": False}, (6, 3)),
}


def _batch_norm_twins(case, dtype, device):
    name, kwargs, shape = BATCH_NORM_CASES[case]
    d_layer, t_layer = getattr(nn, name)(shape[1], **kwargs), getattr(torch.nn, name)(shape[1], **kwargs)
    if t_layer.affine:  # non-trivial affine parameters, so that their gradients and effect are checked
        with torch.no_grad():
            t_layer.weight.uniform_(0.5, 1.5)
            if t_layer.bias is not None:
                t_layer.bias.uniform_(-0.5, 0.5)
    return twins(d_layer, t_layer, dtype, device) + (shape,)


def _batch(shape, step):
    # each step's batch has its own mean and scale, so running statistics move visibly
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal(shape) * (1.0 + step) + step


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(BATCH_NORM_CASES))
def test_batch_norm_train_then_eval_matches_torch(case, dtype, device):
    d, t, shape = _batch_norm_twins(case, dtype, device)
    tolerance = {"atol": 1e-5} if dtype == np.float32 else {}
    for step in range(4):
        d.zero_grad()
        t.zero_grad()
        # compares output, input grad, weight/bias grads and running_mean/running_var/num_batches_tracked
        check_module_against_torch(d, t, [_batch(shape, step)], dtype, device, seed=step, **tolerance)
    d.eval()
    t.eval()
    for step in range(4, 6):
        d.zero_grad()
        t.zero_grad()
        check_module_against_torch(d, t, [_batch(shape, step)], dtype, device, seed=step, **tolerance)
    # back to training: the running statistics continue from where they were
    d.train()
    t.train()
    check_module_against_torch(d, t, [_batch(shape, 7)], dtype, device, seed=7, **tolerance)


def test_batch_norm_buffers_and_num_batches_tracked(device):
    d, t, shape = _batch_norm_twins("2d_momentum_none", np.float64, device)
    assert [n for n, _ in d.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert d.num_batches_tracked.dtype == distrain.int64
    for step in range(3):
        d(to_distrain(_batch(shape, step), device))
        t(to_torch(_batch(shape, step)))
    assert int(d.num_batches_tracked.item()) == 3
    # momentum=None: the running mean is the plain average of the three batch means
    expected = np.mean([_batch(shape, s).mean(axis=(0, 2, 3)) for s in range(3)], axis=0)
    np.testing.assert_allclose(d.running_mean.cpu().numpy(), expected, rtol=1e-12)
    assert_same_state(d, t)
    # eval does not count batches
    d.eval()
    d(to_distrain(_batch(shape, 5), device))
    assert int(d.num_batches_tracked.item()) == 3


def test_batch_norm_without_running_stats_has_no_buffers():
    d = nn.BatchNorm2d(3, track_running_stats=False)
    assert list(d.named_buffers()) == [] and list(d.state_dict()) == list(torch.nn.BatchNorm2d(
        3, track_running_stats=False).state_dict()) == ["weight", "bias"]
    assert list(nn.BatchNorm2d(3, affine=False).state_dict()) == list(
        torch.nn.BatchNorm2d(3, affine=False).state_dict())


def test_batch_norm_state_dict_keys_match_torch():
    assert list(nn.BatchNorm1d(3).state_dict()) == list(torch.nn.BatchNorm1d(3).state_dict())


@pytest.mark.parametrize("name,shape", [("BatchNorm2d", (2, 3, 4)), ("BatchNorm2d", (2, 3)),
                                        ("BatchNorm1d", (2, 3, 4, 5)), ("BatchNorm1d", (3,))], ids=str)
def test_batch_norm_rejects_a_wrong_rank(name, shape):
    with pytest.raises(distrain.ShapeError) as info:
        getattr(nn, name)(3)(distrain.randn(*shape))
    assert str(tuple(shape)) in str(info.value)


def test_batch_norm_rejects_a_wrong_channel_count():
    with pytest.raises(distrain.ShapeError) as info:
        nn.BatchNorm2d(3)(distrain.randn(2, 4, 3, 3))
    assert "(2, 4, 3, 3)" in str(info.value)


def test_batch_norm_refuses_one_value_per_channel_in_training():
    with pytest.raises(ValueError):
        torch.nn.BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(distrain.ShapeError):
        nn.BatchNorm1d(3)(distrain.randn(1, 3))
    nn.BatchNorm1d(3).eval()(distrain.randn(1, 3))  # fine in eval


# --- LayerNorm ---------------------------------------------------------------------------------

# id -> (normalized_shape, constructor kwargs, input shape)
LAYER_NORM_CASES = {
    "last_dim": (5, {}, (3, 5)),
    "last_dim_3d": (5, {}, (2, 3, 5)),
    "last_dim_tuple": ((5,), {}, (4, 5)),
    "two_dims": ((3, 4), {}, (2, 3, 4)),
    "two_dims_4d": ((3, 4), {}, (2, 2, 3, 4)),
    "no_affine": (5, {"elementwise_affine": False}, (3, 5)),
    "no_affine_two_dims": ((3, 4), {"elementwise_affine": False}, (2, 3, 4)),
    "no_bias": (5, {"bias": False}, (3, 5)),
    "eps": (4, {"eps": 1e-1}, (3, 4)),
    "one_sample": (6, {}, (6,)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(LAYER_NORM_CASES))
def test_layer_norm_matches_torch(case, dtype, device):
    normalized_shape, kwargs, shape = LAYER_NORM_CASES[case]
    t_layer = torch.nn.LayerNorm(normalized_shape, **kwargs)
    with torch.no_grad():
        for p in t_layer.parameters():
            p.uniform_(0.5, 1.5)
    d, t = twins(nn.LayerNorm(normalized_shape, **kwargs), t_layer, dtype, device)
    check_module_against_torch(d, t, [np.random.default_rng(3).standard_normal(shape) * 3 + 1], dtype, device,
                               atol=1e-5 if dtype == np.float32 else None)


def test_layer_norm_parameters_match_torch():
    for kwargs in ({}, {"bias": False}, {"elementwise_affine": False}):
        d, t = nn.LayerNorm((3, 4), **kwargs), torch.nn.LayerNorm((3, 4), **kwargs)
        assert [(n, tuple(p.shape)) for n, p in d.named_parameters()] == \
               [(n, tuple(p.shape)) for n, p in t.named_parameters()]


def test_layer_norm_rejects_wrong_trailing_dims():
    with pytest.raises(distrain.ShapeError) as info:
        nn.LayerNorm((3, 4))(distrain.randn(2, 4, 3))
    assert "(2, 4, 3)" in str(info.value)


# --- second derivatives ------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2, 2)], ids=str)
def test_batch_norm_train_second_derivatives(shape, device):
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(shape), rng.uniform(0.5, 1.5, shape[1]), rng.standard_normal(shape[1])]
    check_second_order_against_torch(lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
                                     lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, True),
                                     arrays, np.float64, device)


def test_batch_norm_train_with_running_stats_second_derivatives(device):
    rng = np.random.default_rng(8)
    shape = (3, 2, 2, 2)
    arrays = [rng.standard_normal(shape), rng.uniform(0.5, 1.5, 2), rng.standard_normal(2)]
    stats = rng.standard_normal(2), rng.uniform(0.5, 2.0, 2)
    check_second_order_against_torch(
        lambda x, w, b: F.batch_norm(x, to_distrain(stats[0], device), to_distrain(stats[1], device), w, b, True),
        lambda x, w, b: torch.nn.functional.batch_norm(x, to_torch(stats[0]), to_torch(stats[1]), w, b, True),
        arrays, np.float64, device)


def test_batch_norm_eval_second_derivatives(device):
    # eval batch norm is affine in x, so square x first to give the second derivative something to carry
    rng = np.random.default_rng(9)
    shape = (3, 2, 2, 2)
    arrays = [rng.standard_normal(shape), rng.uniform(0.5, 1.5, 2), rng.standard_normal(2)]
    mean, var = rng.standard_normal(2), rng.uniform(0.5, 2.0, 2)
    check_second_order_against_torch(
        lambda x, w, b: F.batch_norm(x * x, to_distrain(mean, device), to_distrain(var, device), w, b, False) * w,
        lambda x, w, b: torch.nn.functional.batch_norm(x * x, to_torch(mean), to_torch(var), w, b, False) * w,
        arrays, np.float64, device)


@pytest.mark.parametrize("normalized_shape,shape", [((4,), (3, 4)), ((2, 3), (2, 2, 3))], ids=str)
def test_layer_norm_second_derivatives(normalized_shape, shape, device):
    rng = np.random.default_rng(10)
    arrays = [rng.standard_normal(shape), rng.uniform(0.5, 1.5, normalized_shape),
              rng.standard_normal(normalized_shape)]
    check_second_order_against_torch(lambda x, w, b: F.layer_norm(x, normalized_shape, w, b),
                                     lambda x, w, b: torch.nn.functional.layer_norm(x, normalized_shape, w, b),
                                     arrays, np.float64, device)


def test_layer_norm_without_affine_second_derivatives(device):
    rng = np.random.default_rng(11)
    check_second_order_against_torch(lambda x: F.layer_norm(x, (4,)), lambda x: torch.nn.functional.layer_norm(x, (4,)),
                                     [rng.standard_normal((3, 4))], np.float64, device)


def test_functional_batch_norm_updates_running_stats_like_torch(device):
    x = np.random.default_rng(12).standard_normal((5, 3))
    d_mean, d_var = to_distrain(np.zeros(3), device), to_distrain(np.ones(3), device)
    t_mean, t_var = to_torch(np.zeros(3)), to_torch(np.ones(3))
    out = F.batch_norm(to_distrain(x, device), d_mean, d_var, training=True, momentum=0.2)
    expected = torch.nn.functional.batch_norm(to_torch(x), t_mean, t_var, training=True, momentum=0.2)
    assert_close(out, expected)
    assert_close(d_mean, t_mean, what="running_mean")
    assert_close(d_var, t_var, what="running_var")
