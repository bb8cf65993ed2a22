"""SmoothL1Loss, HuberLoss, KLDivLoss, CosineEmbeddingLoss (and their functional forms) against torch: every
reduction, the options (beta, delta, log_target, 'batchmean', margin), gradients of input and target, and the
errors for mismatched shapes."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, assert_close, check_finite_differences, check_op_against_torch, to_distrain

REDUCTIONS = ["mean", "sum", "none"]


def _pair(rng, shape=(4, 5), scale=2.0):
    return rng.standard_normal(shape) * scale, rng.standard_normal(shape) * scale


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
def test_smooth_l1_loss_matches_torch(beta, reduction, dtype, device):
    x, y = _pair(np.random.default_rng(0))
    check_op_against_torch(lambda x, y: F.smooth_l1_loss(x, y, reduction=reduction, beta=beta),
                           lambda x, y: TF.smooth_l1_loss(x, y, reduction=reduction, beta=beta), [x, y], dtype, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [1.0, 0.4, 2.5])
def test_huber_loss_matches_torch(delta, reduction, dtype, device):
    x, y = _pair(np.random.default_rng(1))
    check_op_against_torch(lambda x, y: F.huber_loss(x, y, reduction=reduction, delta=delta),
                           lambda x, y: TF.huber_loss(x, y, reduction=reduction, delta=delta), [x, y], dtype, device)


def test_smooth_l1_and_huber_at_the_switch_point_match_torch():
    x = np.array([0.0, 0.5, 1.0, -1.0, 2.0])  # differences exactly at beta/delta and at 0
    y = np.zeros(5)
    check_op_against_torch(lambda x, y: F.smooth_l1_loss(x, y, beta=1.0),
                           lambda x, y: TF.smooth_l1_loss(x, y, beta=1.0), [x, y])
    check_op_against_torch(lambda x, y: F.huber_loss(x, y, delta=1.0), lambda x, y: TF.huber_loss(x, y, delta=1.0),
                           [x, y])


def _log_probs_and_target(rng, log_target, shape=(3, 5)):
    logits = rng.standard_normal(shape)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = rng.dirichlet(np.ones(shape[-1]), size=shape[0])
    target[0, 1] = 0.0  # a zero probability contributes 0 (x log x -> 0)
    return log_probs, (np.log(rng.dirichlet(np.ones(shape[-1]), size=shape[0])) if log_target else target)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(log_target, reduction, dtype, device):
    log_probs, target = _log_probs_and_target(np.random.default_rng(2), log_target)
    requires_grad = [True, log_target]  # torch's kl_div gradient in a zero target is -inf; only log targets learn
    check_op_against_torch(lambda x, t: F.kl_div(x, t, reduction=reduction, log_target=log_target),
                           lambda x, t: TF.kl_div(x, t, reduction=reduction, log_target=log_target),
                           [log_probs, target], dtype, device, requires_grad=requires_grad)


def test_kl_div_target_gradient_matches_torch_for_positive_targets():
    rng = np.random.default_rng(3)
    log_probs, target = rng.standard_normal((3, 4)), rng.uniform(0.1, 1.0, (3, 4))
    check_op_against_torch(lambda x, t: F.kl_div(x, t, reduction="batchmean"),
                           lambda x, t: TF.kl_div(x, t, reduction="batchmean"), [log_probs, target])


def test_kl_div_mean_warns_like_torch():
    x, t = distrain.randn(2, 3), distrain.rand(2, 3)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size") as d_record:
        F.kl_div(x, t)
    with pytest.warns(UserWarning) as t_record:
        TF.kl_div(torch.randn(2, 3), torch.rand(2, 3))
    assert str(d_record[0].message) == str(t_record[0].message)


def test_kl_div_loss_module_matches_torch():
    log_probs, target = _log_probs_and_target(np.random.default_rng(4), False)
    for kwargs in ({"reduction": "batchmean"}, {"reduction": "sum", "log_target": False}):
        expected = torch.nn.KLDivLoss(**kwargs)(torch.tensor(log_probs), torch.tensor(target))
        assert_close(nn.KLDivLoss(**kwargs)(to_distrain(log_probs), to_distrain(target)), expected)
    with pytest.raises(ValueError, match="batchmean"):
        nn.KLDivLoss(reduction="average")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.2])
def test_cosine_embedding_loss_matches_torch(margin, reduction, dtype, device):
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    x2[0] = x1[0] * 2.0  # a pair at cosine 1 and one at -1
    x2[1] = -x1[1]
    target = np.array([1, -1, 1, -1, -1, 1], dtype=np.int64)
    check_op_against_torch(lambda a, b, y: F.cosine_embedding_loss(a, b, y, margin=margin, reduction=reduction),
                           lambda a, b, y: TF.cosine_embedding_loss(a, b, y, margin=margin, reduction=reduction),
                           [x1, x2, target], dtype, device)


def test_cosine_embedding_loss_of_one_pair_and_float_targets_matches_torch():
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal(5), rng.standard_normal(5)
    check_op_against_torch(lambda a, b, y: F.cosine_embedding_loss(a, b, y),
                           lambda a, b, y: TF.cosine_embedding_loss(a, b, y), [x1, x2, np.array(-1.0)],
                           requires_grad=[True, True, False])
    module_kwargs = {"margin": 0.1, "reduction": "sum"}
    a, b, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), np.array([1.0, -1.0, -1.0])
    expected = torch.nn.CosineEmbeddingLoss(**module_kwargs)(*(torch.tensor(v) for v in (a, b, y)))
    assert_close(nn.CosineEmbeddingLoss(**module_kwargs)(*(to_distrain(v) for v in (a, b, y))), expected)


@pytest.mark.parametrize("cls, kwargs", [("SmoothL1Loss", {"beta": 0.5}), ("HuberLoss", {"delta": 0.7}),
                                         ("SmoothL1Loss", {"reduction": "none"}), ("HuberLoss", {"reduction": "sum"})])
def test_loss_modules_match_torch(cls, kwargs, device):
    x, y = _pair(np.random.default_rng(7))
    check_op_against_torch(lambda x, y: getattr(nn, cls)(**kwargs)(x, y),
                           lambda x, y: getattr(torch.nn, cls)(**kwargs)(x, y), [x, y], np.float32, device)


def test_losses_gradcheck():
    rng = np.random.default_rng(8)
    x, y = rng.uniform(-3, 3, (2, 3)), rng.uniform(-3, 3, (2, 3))
    check_finite_differences(lambda x, y: F.smooth_l1_loss(x, y, beta=0.7), [x, y])
    check_finite_differences(lambda x, y: F.huber_loss(x, y, delta=0.7), [x, y])
    check_finite_differences(lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=True), [x, y])
    target = np.array([1, -1], dtype=np.int64)
    check_finite_differences(lambda a, b: F.cosine_embedding_loss(a, b, to_distrain(target), margin=-0.5), [x, y])


@pytest.mark.parametrize("call", [
    lambda: F.smooth_l1_loss(distrain.randn(4, 1), distrain.randn(4)),
    lambda: F.huber_loss(distrain.randn(4, 1), distrain.randn(4)),
    lambda: F.kl_div(distrain.randn(4, 3), distrain.rand(3), reduction="sum"),
], ids=["smooth_l1", "huber", "kl_div"])
def test_mismatched_shapes_are_refused_naming_both(call):
    with pytest.raises(distrain.ShapeError, match=r"input shape \(4, .*\) and target shape"):
        call()


def test_cosine_embedding_loss_errors_name_the_argument():
    with pytest.raises(distrain.ShapeError, match="input1 and input2"):
        F.cosine_embedding_loss(distrain.randn(3, 4), distrain.randn(3, 5), distrain.ones(3))
    with pytest.raises(distrain.ShapeError, match=r"target must have shape \(3,\)"):
        F.cosine_embedding_loss(distrain.randn(3, 4), distrain.randn(3, 4), distrain.ones(4))


def test_bad_beta_and_delta_are_refused():
    with pytest.raises(distrain.ArgumentError, match="beta"):
        F.smooth_l1_loss(distrain.randn(3), distrain.randn(3), beta=-1.0)
    with pytest.raises(distrain.ArgumentError, match="delta"):
        F.huber_loss(distrain.randn(3), distrain.randn(3), delta=0.0)
