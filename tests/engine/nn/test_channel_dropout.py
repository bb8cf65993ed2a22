"""Dropout1d/2d/3d: whole channels dropped (never single elements), the drop rate and scaling, the gradient is the
mask, identity in eval, reproducible under manual_seed; torch's conventions for shapes (3-D input to dropout2d,
unbatched inputs) with its warnings, and its repr. The masks themselves come from distrain's generator, so they are
compared with torch by their structure and statistics, not element by element."""
import distrain.nn as nn
import distrain.nn.functional as F
import numpy as np
import pytest
import torch

import distrain

from ..oracle import to_distrain, to_numpy


@pytest.mark.parametrize("cls, shape", [("Dropout1d", (400, 50, 3)), ("Dropout2d", (400, 50, 2, 3)),
                                        ("Dropout3d", (200, 50, 2, 2, 2))])
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_whole_channels_are_dropped_at_rate_p_and_the_rest_scaled(cls, shape, p, device):
    distrain.manual_seed(0)
    x = to_distrain(np.random.default_rng(0).uniform(0.5, 1.5, shape), device, requires_grad=True)
    out = getattr(nn, cls)(p)(x)
    ratio = to_numpy(out.detach()) / to_numpy(x.detach())
    per_channel = ratio.reshape(shape[0], shape[1], -1)
    assert np.allclose(per_channel, per_channel[:, :, :1])  # one decision per (sample, channel)
    kept = per_channel[:, :, 0] != 0
    assert np.allclose(per_channel[:, :, 0][kept], 1 / (1 - p))
    assert abs((1 - kept.mean()) - p) < 4 * np.sqrt(p * (1 - p) / kept.size)
    out.sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), ratio)  # the gradient is the mask


@pytest.mark.parametrize("cls, shape", [("Dropout1d", (3, 4, 5)), ("Dropout2d", (3, 4, 5, 5))])
def test_eval_and_p_zero_are_identity_and_p_one_zeroes(cls, shape):
    x = distrain.randn(*shape)
    layer = getattr(nn, cls)(0.5).eval()
    assert layer(x) is x
    assert getattr(nn, cls)(0.0)(x) is x
    assert not getattr(nn, cls)(1.0)(x).numpy().any()


def test_same_seed_same_mask():
    x = distrain.ones(8, 16, 3, 3)
    distrain.manual_seed(3)
    first = F.dropout2d(x).numpy()
    distrain.manual_seed(3)
    np.testing.assert_array_equal(F.dropout2d(x).numpy(), first)


def test_unbatched_inputs_drop_channels_as_torch_does():
    distrain.manual_seed(1)
    out = F.dropout1d(distrain.ones(64, 5), 0.5).numpy()  # (C, L)
    assert out.shape == (64, 5) and np.all(out == out[:, :1])
    out = F.dropout3d(distrain.ones(64, 2, 2, 2), 0.5).numpy()  # (C, D, H, W)
    assert np.all(out.reshape(64, -1) == out.reshape(64, -1)[:, :1])


def test_dropout2d_reads_a_3d_input_as_n_c_l_with_torchs_warning():
    distrain.manual_seed(2)
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d") as d_record:
        out = nn.Dropout2d(0.5)(distrain.ones(6, 32, 4)).numpy()
    with pytest.warns(UserWarning) as t_record:
        torch.nn.Dropout2d(0.5)(torch.ones(6, 32, 4))
    assert str(d_record[0].message) == str(t_record[0].message)
    assert np.all(out == out[:, :, :1])  # channels are dim 1 of the 3 dimensions, as torch


def test_inplace_overwrites_the_input():
    distrain.manual_seed(4)
    x = distrain.ones(4, 8, 2, 2)
    out = F.dropout2d(x, 0.5, inplace=True)
    np.testing.assert_array_equal(x.numpy(), out.numpy())
    assert set(np.unique(x.numpy())) <= {0.0, 2.0}


@pytest.mark.parametrize("cls", ["Dropout1d", "Dropout2d", "Dropout3d"])
def test_repr_matches_torch(cls):
    assert repr(getattr(nn, cls)(0.3, inplace=True)) == repr(getattr(torch.nn, cls)(0.3, inplace=True))


def test_bad_shapes_and_probabilities_are_refused():
    with pytest.raises(distrain.ShapeError, match=r"dropout1d: expected a 2-D \(unbatched\) or 3-D"):
        F.dropout1d(distrain.randn(2, 3, 4, 5))
    with pytest.raises(distrain.ShapeError, match="dropout2d: expected a 3-D"):
        F.dropout2d(distrain.randn(2, 3))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout2d(1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout3d(distrain.randn(2, 3, 2, 2, 2), -0.1)
