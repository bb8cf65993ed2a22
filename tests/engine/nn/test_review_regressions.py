"""Edge cases found in review: saturated BCE, all-ignored NLL, class-weight length, view after conv, bad strides."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F
from distrain.errors import ShapeError


def test_bce_gradient_is_finite_for_saturated_correct_predictions():
    logits = np.array([20.0, -3.0, 1.0, -25.0], dtype=np.float32)
    target = np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32)
    x, tx = distrain.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    F.binary_cross_entropy(x.sigmoid(), distrain.tensor(target)).backward()
    torch.nn.functional.binary_cross_entropy(tx.sigmoid(), torch.tensor(target)).backward()
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_bce_target_gradient_matches_torch():
    p, t = np.array([0.2, 0.7, 0.99]), np.array([0.1, 0.5, 0.9])
    x, y = distrain.tensor(p, requires_grad=True), distrain.tensor(t, requires_grad=True)
    tx, ty = torch.tensor(p, requires_grad=True), torch.tensor(t, requires_grad=True)
    F.binary_cross_entropy(x, y).backward()
    torch.nn.functional.binary_cross_entropy(tx, ty).backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-10)


def test_nll_loss_with_every_target_ignored_is_nan_with_a_zero_gradient():
    x = distrain.randn(3, 4, requires_grad=True)
    loss = F.nll_loss(x.log_softmax(1), distrain.tensor([-100, -100, -100]))
    loss.backward()
    assert np.isnan(loss.item())
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4), dtype=np.float32))


@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
@pytest.mark.parametrize("length", [2, 4])
def test_class_weight_of_the_wrong_length_is_refused(loss, length):
    with pytest.raises(ShapeError, match=r"one entry per class, shape \(3,\)"):
        loss(distrain.randn(5, 3), distrain.tensor([0, 1, 2, 0, 1]), weight=distrain.ones(length))


def test_view_flattens_a_conv_activation_like_pytorch_tutorials_do():
    distrain.manual_seed(0)
    conv = nn.Conv2d(3, 6, 5)
    x = distrain.randn(4, 3, 32, 32, requires_grad=True)
    features = F.max_pool2d(F.relu(conv(x)), 2)
    flat = features.view(-1, 6 * 14 * 14)
    np.testing.assert_array_equal(flat.detach().numpy(), features.detach().numpy().reshape(4, -1))
    flat.sum().backward()
    assert x.grad.shape == x.shape


def test_view_of_a_user_transpose_still_refuses_to_copy():
    with pytest.raises(ShapeError, match="cannot be viewed"):
        distrain.randn(3, 4).t().view(12)


@pytest.mark.parametrize("call", [lambda x: F.conv2d(x, distrain.randn(2, 3, 3, 3), stride=0),
                                  lambda x: F.max_pool2d(x, 2, stride=0),
                                  lambda x: F.avg_pool2d(x, 0),
                                  lambda x: F.adaptive_avg_pool2d(x, 0),
                                  lambda x: F.conv2d(x, distrain.randn(2, 3, 3, 3), stride=1.0)])
def test_bad_window_arguments_raise_value_errors_not_arithmetic_ones(call):
    with pytest.raises(ValueError):
        call(distrain.randn(1, 3, 8, 8))
