"""Loss modules against torch.nn: MSELoss, L1Loss, CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss, BCELoss.

Every case runs with reduction "mean", "sum" and "none", in float32 and float64, and compares
the loss and the gradient with respect to the input (and to float targets where torch has one).
"""
import numpy as np
import pytest
import torch
import torch.nn._reduction as torch_reduction

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, assert_close, to_distrain, to_torch
from .module_oracle import check_module_against_torch, twins

REDUCTIONS = ["mean", "sum", "none"]
_rng = np.random.default_rng(0)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _weights(values):
    """A per-class weight tensor built in whichever library constructs the loss."""
    return lambda lib: lib.tensor(np.array(values, dtype=np.float64))


LOGITS = _rng.standard_normal((6, 5)) * 2
CLASSES = np.array([0, 4, 2, 2, 1, 3], dtype=np.int64)
CLASSES_IGNORED = np.array([0, -100, 2, 2, -100, 3], dtype=np.int64)
CLASSES_IGNORE_2 = np.array([0, 4, 2, 2, 1, 3], dtype=np.int64)
PROBS = _softmax(_rng.standard_normal((6, 5)), 1)
LOGITS_K = _rng.standard_normal((2, 4, 3, 2))
CLASSES_K = _rng.integers(0, 4, (2, 3, 2)).astype(np.int64)
CLASSES_K_IGNORED = np.where(_rng.uniform(size=(2, 3, 2)) < 0.3, -100, CLASSES_K).astype(np.int64)
PROBS_K = _softmax(_rng.standard_normal((2, 4, 3, 2)), 1)
CLASS_WEIGHTS = [0.5, 2.0, 1.0, 0.25, 3.0]
LOG_PROBS = np.log(_softmax(_rng.standard_normal((6, 5)), 1))
LOG_PROBS_K = np.log(_softmax(_rng.standard_normal((2, 4, 3, 2)), 1))
REGRESSION_INPUT = _rng.standard_normal((3, 4))
REGRESSION_TARGET = _rng.standard_normal((3, 4))
BINARY_LOGITS = _rng.standard_normal((4, 3)) * 3
BINARY_TARGET = (_rng.uniform(size=(4, 3)) > 0.5).astype(np.float64)
SOFT_BINARY_TARGET = _rng.uniform(size=(4, 3))
PROBABILITIES = 1 / (1 + np.exp(-BINARY_LOGITS))

# id -> (class name, kwargs (callables get the library), input, target, whether a float target requires grad)
LOSS_CASES = {
    "mse": ("MSELoss", {}, REGRESSION_INPUT, REGRESSION_TARGET, True),
    "mse_1d": ("MSELoss", {}, REGRESSION_INPUT[0], REGRESSION_TARGET[0], True),
    "l1": ("L1Loss", {}, REGRESSION_INPUT, REGRESSION_TARGET, True),
    "l1_3d": ("L1Loss", {}, REGRESSION_INPUT.reshape(2, 3, 2), REGRESSION_TARGET.reshape(2, 3, 2), True),
    "ce": ("CrossEntropyLoss", {}, LOGITS, CLASSES, False),
    "ce_unbatched": ("CrossEntropyLoss", {}, LOGITS[0], np.array(3, dtype=np.int64), False),
    "ce_weight": ("CrossEntropyLoss", {"weight": _weights(CLASS_WEIGHTS)}, LOGITS, CLASSES, False),
    "ce_ignore_index": ("CrossEntropyLoss", {}, LOGITS, CLASSES_IGNORED, False),
    "ce_ignore_index_2": ("CrossEntropyLoss", {"ignore_index": 2}, LOGITS, CLASSES_IGNORE_2, False),
    "ce_weight_ignore_index": ("CrossEntropyLoss", {"weight": _weights(CLASS_WEIGHTS)}, LOGITS, CLASSES_IGNORED,
                               False),
    "ce_label_smoothing": ("CrossEntropyLoss", {"label_smoothing": 0.1}, LOGITS, CLASSES, False),
    "ce_label_smoothing_weight_ignore": ("CrossEntropyLoss", {"label_smoothing": 0.2,
                                                              "weight": _weights(CLASS_WEIGHTS)},
                                         LOGITS, CLASSES_IGNORED, False),
    "ce_probs": ("CrossEntropyLoss", {}, LOGITS, PROBS, False),
    "ce_probs_weight": ("CrossEntropyLoss", {"weight": _weights(CLASS_WEIGHTS)}, LOGITS, PROBS, False),
    "ce_probs_label_smoothing": ("CrossEntropyLoss", {"label_smoothing": 0.3}, LOGITS, PROBS, False),
    "ce_kdim": ("CrossEntropyLoss", {}, LOGITS_K, CLASSES_K, False),
    "ce_kdim_weight_ignore": ("CrossEntropyLoss", {"weight": _weights(CLASS_WEIGHTS[:4])}, LOGITS_K,
                              CLASSES_K_IGNORED, False),
    "ce_kdim_label_smoothing": ("CrossEntropyLoss", {"label_smoothing": 0.1, "weight": _weights(CLASS_WEIGHTS[:4])},
                                LOGITS_K, CLASSES_K_IGNORED, False),
    "ce_kdim_probs": ("CrossEntropyLoss", {}, LOGITS_K, PROBS_K, False),
    "nll": ("NLLLoss", {}, LOG_PROBS, CLASSES, False),
    "nll_unbatched": ("NLLLoss", {}, LOG_PROBS[0], np.array(1, dtype=np.int64), False),
    "nll_weight": ("NLLLoss", {"weight": _weights(CLASS_WEIGHTS)}, LOG_PROBS, CLASSES, False),
    "nll_ignore_index": ("NLLLoss", {}, LOG_PROBS, CLASSES_IGNORED, False),
    "nll_weight_ignore_index_2": ("NLLLoss", {"weight": _weights(CLASS_WEIGHTS), "ignore_index": 2}, LOG_PROBS,
                                  CLASSES_IGNORE_2, False),
    "nll_kdim": ("NLLLoss", {"weight": _weights(CLASS_WEIGHTS[:4])}, LOG_PROBS_K, CLASSES_K_IGNORED, False),
    "bce_logits": ("BCEWithLogitsLoss", {}, BINARY_LOGITS, BINARY_TARGET, True),
    "bce_logits_soft": ("BCEWithLogitsLoss", {}, BINARY_LOGITS, SOFT_BINARY_TARGET, True),
    "bce_logits_weight": ("BCEWithLogitsLoss", {"weight": _weights([0.5, 1.0, 2.0])}, BINARY_LOGITS, BINARY_TARGET,
                          True),
    "bce_logits_weight_2d": ("BCEWithLogitsLoss", {"weight": lambda lib: lib.tensor(_rng.uniform(0.5, 2, (4, 3)))},
                             BINARY_LOGITS, SOFT_BINARY_TARGET, True),
    "bce_logits_pos_weight": ("BCEWithLogitsLoss", {"pos_weight": _weights([3.0, 0.5, 1.0])}, BINARY_LOGITS,
                              SOFT_BINARY_TARGET, True),
    "bce_logits_weight_pos_weight": ("BCEWithLogitsLoss", {"weight": _weights([0.5, 1.0, 2.0]),
                                                           "pos_weight": _weights([3.0, 0.5, 1.0])},
                                     BINARY_LOGITS, BINARY_TARGET, True),
    "bce_logits_large": ("BCEWithLogitsLoss", {}, BINARY_LOGITS * 100, BINARY_TARGET, True),
    "bce": ("BCELoss", {}, PROBABILITIES, BINARY_TARGET, False),
    "bce_soft": ("BCELoss", {}, PROBABILITIES, SOFT_BINARY_TARGET, False),
    "bce_weight": ("BCELoss", {"weight": _weights([0.5, 1.0, 2.0])}, PROBABILITIES, SOFT_BINARY_TARGET, False),
}


def _make(lib, case, reduction):
    name, kwargs, *_ = LOSS_CASES[case]
    built = {key: (value(lib) if callable(value) else value) for key, value in kwargs.items()}
    return getattr(lib.nn, name)(reduction=reduction, **built)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_loss_matches_torch(case, reduction, dtype, device):
    _, _, input, target, target_grad = LOSS_CASES[case]
    d, t = twins(_make(distrain, case, reduction), _make(torch, case, reduction), dtype, device)
    float_target = np.asarray(target).dtype.kind == "f"
    check_module_against_torch(d, t, [input, target], dtype, device, requires_grad=[True, float_target and target_grad],
                               atol=1e-5 if dtype == np.float32 else None)


@pytest.mark.parametrize("case", ["ce_probs", "ce_kdim_probs", "bce", "bce_weight"])
def test_loss_gradient_with_respect_to_float_targets(case, device):
    # torch differentiates these losses with respect to probability targets too (distillation from a learned teacher)
    _, _, input, target, _ = LOSS_CASES[case]
    d, t = twins(_make(distrain, case, "mean"), _make(torch, case, "mean"), np.float64, device)
    check_module_against_torch(d, t, [input, target], np.float64, device)


def test_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradient(device):
    ignored = np.full(6, -100, dtype=np.int64)
    d, t = twins(nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), np.float64, device)
    d_out, _ = check_module_against_torch(d, t, [LOGITS, ignored], np.float64, device)
    assert np.isnan(d_out[0].item())


def test_loss_repr_matches_torch():
    for name in ("MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "BCELoss"):
        assert repr(getattr(nn, name)()) == repr(getattr(torch.nn, name)()), name


# --- the deprecated size_average / reduce flags -------------------------------------------------

@pytest.mark.parametrize("size_average,reduce", [(False, None), (True, None), (None, False), (False, True),
                                                 (True, False), (None, True)], ids=str)
@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "NLLLoss", "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss"])
def test_legacy_size_average_and_reduce_map_to_torch_reductions(name, size_average, reduce, device):
    reduction = torch_reduction.legacy_get_string(size_average, reduce, emit_warning=False)
    d_loss = getattr(nn, name)(size_average=size_average, reduce=reduce)
    assert d_loss.reduction == reduction
    case = {"MSELoss": "mse", "L1Loss": "l1", "NLLLoss": "nll", "CrossEntropyLoss": "ce", "BCELoss": "bce",
            "BCEWithLogitsLoss": "bce_logits"}[name]
    _, _, input, target, _ = LOSS_CASES[case]
    d, t = twins(d_loss, getattr(torch.nn, name)(reduction=reduction), np.float64, device)
    check_module_against_torch(d, t, [input, target], np.float64, device, requires_grad=[True, False])


def test_mse_size_average_false_is_a_sum(device):
    x, y = REGRESSION_INPUT, REGRESSION_TARGET
    loss = nn.MSELoss(size_average=False)(to_distrain(x, device), to_distrain(y, device))
    assert_close(loss, torch.nn.MSELoss(reduction="sum")(to_torch(x), to_torch(y)))
    functional = F.mse_loss(to_distrain(x, device), to_distrain(y, device), size_average=False)
    assert_close(functional, torch.nn.MSELoss(reduction="sum")(to_torch(x), to_torch(y)))


# --- bad inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "BCEWithLogitsLoss", "BCELoss"])
@pytest.mark.parametrize("shapes", [((4, 1), (4,)), ((3, 4), (4, 3)), ((2,), (2, 1))], ids=str)
def test_elementwise_loss_refuses_mismatched_shapes(name, shapes):
    input_shape, target_shape = shapes
    input = distrain.rand(*input_shape) * 0.5 + 0.25
    target = distrain.rand(*target_shape)
    with pytest.raises(distrain.ShapeError) as info:
        getattr(nn, name)()(input, target)
    assert str(input_shape) in str(info.value) and str(target_shape) in str(info.value)


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss"])
@pytest.mark.parametrize("input_shape,target_shape", [((6, 5), (5,)), ((6, 5), (6, 1)), ((2, 4, 3), (2, 4)),
                                                     ((2, 4, 3, 2), (2, 3))], ids=str)
def test_classification_loss_refuses_mismatched_target_shapes(name, input_shape, target_shape):
    input = distrain.randn(*input_shape)
    target = distrain.zeros(*target_shape, dtype=distrain.int64)
    with pytest.raises(distrain.ShapeError) as info:
        getattr(nn, name)()(input, target)
    assert str(input_shape) in str(info.value) and str(target_shape) in str(info.value)


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss"])
@pytest.mark.parametrize("bad_class", [5, 17, -1, -3])
def test_classification_loss_refuses_out_of_range_classes(name, bad_class):
    target = CLASSES.copy()
    target[2] = bad_class
    with pytest.raises(distrain.DistrainError) as info:
        getattr(nn, name)()(to_distrain(LOGITS), to_distrain(target))
    message = str(info.value)
    assert "5" in message and str(bad_class) in message, message


@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "BCELoss"])
def test_bad_reduction_string_is_refused(name):
    with pytest.raises(ValueError):
        getattr(torch.nn, name)(reduction="avg")(torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64)
                                                 if "NLL" in name or "Cross" in name else torch.zeros(2, 2))
    with pytest.raises(ValueError) as info:
        getattr(nn, name)(reduction="avg")
    assert "avg" in str(info.value)


@pytest.mark.parametrize("fn,args", [
    (F.mse_loss, (REGRESSION_INPUT, REGRESSION_TARGET)),
    (F.l1_loss, (REGRESSION_INPUT, REGRESSION_TARGET)),
    (F.cross_entropy, (LOGITS, CLASSES)),
    (F.nll_loss, (LOG_PROBS, CLASSES)),
    (F.binary_cross_entropy_with_logits, (BINARY_LOGITS, BINARY_TARGET)),
    (F.binary_cross_entropy, (PROBABILITIES, BINARY_TARGET)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_functional_bad_reduction_string_is_refused(fn, args):
    with pytest.raises(ValueError) as info:
        fn(*[to_distrain(a) for a in args], reduction="avg")
    assert "avg" in str(info.value)


def test_nll_loss_refuses_float_targets():
    with pytest.raises(distrain.DistrainError):
        nn.NLLLoss()(to_distrain(LOG_PROBS), to_distrain(CLASSES.astype(np.float64)))


def test_binary_cross_entropy_refuses_values_outside_0_1():
    with pytest.raises(ValueError):
        nn.BCELoss()(to_distrain(BINARY_LOGITS), to_distrain(BINARY_TARGET))
