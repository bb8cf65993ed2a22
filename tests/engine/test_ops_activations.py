"""Activations and losses against torch.nn.functional: relu leaky_relu gelu sigmoid tanh softmax
log_softmax one_hot cross_entropy."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import distrain
import distrain.nn.functional as F

from .oracle import (
    FLOAT_DTYPES,
    check_finite_differences,
    check_op_against_torch,
    check_second_order_against_torch,
    random_array,
    to_distrain,
    to_numpy,
    to_torch,
)

# name -> (distrain fn, torch fn, domain)
ACTIVATIONS = {
    "relu_F": (lambda x: F.relu(x), lambda x: TF.relu(x), "nonzero"),
    "relu_top": (lambda x: distrain.relu(x), lambda x: torch.relu(x), "nonzero"),
    "relu_method": (lambda x: x.relu(), lambda x: x.relu(), "nonzero"),
    "leaky_relu_default": (lambda x: F.leaky_relu(x), lambda x: TF.leaky_relu(x), "nonzero"),
    "leaky_relu_0.2": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), "nonzero"),
    "leaky_relu_kw": (lambda x: F.leaky_relu(x, negative_slope=0.5), lambda x: TF.leaky_relu(x, negative_slope=0.5),
                      "nonzero"),
    "gelu_exact": (lambda x: F.gelu(x), lambda x: TF.gelu(x), "any"),
    "gelu_none": (lambda x: F.gelu(x, approximate="none"), lambda x: TF.gelu(x, approximate="none"), "any"),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"), "any"),
    "sigmoid_F": (lambda x: F.sigmoid(x), lambda x: torch.sigmoid(x), "any"),
    "sigmoid_top": (lambda x: distrain.sigmoid(x), lambda x: torch.sigmoid(x), "any"),
    "sigmoid_method": (lambda x: x.sigmoid(), lambda x: x.sigmoid(), "any"),
    "tanh_F": (lambda x: F.tanh(x), lambda x: torch.tanh(x), "any"),
    "tanh_top": (lambda x: distrain.tanh(x), lambda x: torch.tanh(x), "any"),
    "tanh_method": (lambda x: x.tanh(), lambda x: x.tanh(), "any"),
}


def _x(shape, domain="any", seed=0, scale=2.0):
    return random_array(np.random.default_rng(seed), shape, domain) * scale


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 5)], ids=str)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_torch(name, shape, dtype, device):
    d_fn, t_fn, domain = ACTIVATIONS[name]
    check_op_against_torch(d_fn, t_fn, [_x(shape, domain)], dtype, device)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_finite_differences(name, device):
    d_fn, _, domain = ACTIVATIONS[name]
    check_finite_differences(d_fn, [_x((3, 4), domain, seed=1)], device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["sigmoid_F", "tanh_F", "gelu_exact", "gelu_tanh", "leaky_relu_0.2"])
def test_activation_saturated_inputs(name, dtype, device):
    # large magnitudes: no overflow warnings (warnings are errors), no NaN, gradients match torch
    d_fn, t_fn, _ = ACTIVATIONS[name]
    x = np.array([-800.0, -100.0, -30.0, -10.0, -1e-3, 1e-3, 10.0, 30.0, 100.0, 800.0])
    check_op_against_torch(d_fn, t_fn, [x], dtype, device)


@pytest.mark.parametrize("name", ["relu_F", "sigmoid_method", "gelu_tanh"])
def test_activation_on_non_contiguous_input(name, device):
    d_fn, t_fn, domain = ACTIVATIONS[name]
    check_op_against_torch(d_fn, t_fn, [_x((6, 5), domain)], np.float64, device, transforms=[lambda t: t[::2].t()])


# --- softmax / log_softmax -------------------------------------------------------------------

SOFTMAX_FORMS = {
    "softmax_F": (lambda x, d: F.softmax(x, d), lambda x, d: TF.softmax(x, d)),
    "softmax_F_kw": (lambda x, d: F.softmax(x, dim=d), lambda x, d: TF.softmax(x, dim=d)),
    "softmax_top": (lambda x, d: distrain.softmax(x, d), lambda x, d: torch.softmax(x, d)),
    "softmax_method": (lambda x, d: x.softmax(d), lambda x, d: x.softmax(d)),
    "log_softmax_F": (lambda x, d: F.log_softmax(x, d), lambda x, d: TF.log_softmax(x, d)),
    "log_softmax_F_kw": (lambda x, d: F.log_softmax(x, dim=d), lambda x, d: TF.log_softmax(x, dim=d)),
    "log_softmax_top": (lambda x, d: distrain.log_softmax(x, d), lambda x, d: torch.log_softmax(x, d)),
    "log_softmax_method": (lambda x, d: x.log_softmax(d), lambda x, d: x.log_softmax(d)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
@pytest.mark.parametrize("form", list(SOFTMAX_FORMS))
def test_softmax_matches_torch(form, dim, dtype, device):
    d_fn, t_fn = SOFTMAX_FORMS[form]
    check_op_against_torch(lambda x: d_fn(x, dim), lambda x: t_fn(x, dim), [_x((3, 4, 5))], dtype, device)


@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("form", ["softmax_F", "softmax_method", "log_softmax_F", "log_softmax_method"])
def test_softmax_of_a_zero_dim_tensor(form, dim, device):
    d_fn, t_fn = SOFTMAX_FORMS[form]
    check_op_against_torch(lambda x: d_fn(x, dim), lambda x: t_fn(x, dim), [np.array(0.3)], np.float64, device)


@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("form", ["softmax_F", "log_softmax_F"])
def test_softmax_finite_differences(form, dim, device):
    d_fn, _ = SOFTMAX_FORMS[form]
    check_finite_differences(lambda x: d_fn(x, dim), [_x((3, 4), seed=1)], device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("form", ["softmax_F", "log_softmax_F"])
def test_softmax_is_stable_for_large_logits(form, dtype, device):
    d_fn, t_fn = SOFTMAX_FORMS[form]
    x = _x((3, 6)) * 300.0 + np.array([[1000.0], [-1000.0], [0.0]])
    d_out, _ = check_op_against_torch(lambda t: d_fn(t, 1), lambda t: t_fn(t, 1), [x], dtype, device, atol=1e-5)
    assert np.all(np.isfinite(to_numpy(d_out[0])))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("form", ["softmax_F", "log_softmax_F"])
def test_softmax_with_masked_minus_inf_entries(form, dtype, device):
    # attention-style masking: some entries are -inf (never a whole row)
    d_fn, t_fn = SOFTMAX_FORMS[form]
    x = _x((4, 5))
    x[np.triu_indices(4, 1, 5)] = -np.inf
    check_op_against_torch(lambda t: d_fn(t, -1), lambda t: t_fn(t, -1), [x], dtype, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("form", ["softmax_method", "log_softmax_method"])
def test_softmax_on_non_contiguous_input(form, dtype, device):
    d_fn, t_fn = SOFTMAX_FORMS[form]
    check_op_against_torch(lambda x: d_fn(x, -1), lambda x: t_fn(x, -1), [_x((8, 3))], dtype, device,
                           transforms=[lambda t: t[::2].t()])


# --- one_hot ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "indices, num_classes",
    [
        ([0, 2, 1, 2], -1),
        ([0, 2, 1, 2], 5),
        ([3], -1),
        ([[0, 4], [2, 2], [1, 0]], -1),
        ([[0, 4], [2, 2], [1, 0]], 6),
        (0, 3),
    ],
    ids=["infer", "explicit", "single", "2d_infer", "2d_explicit", "scalar"],
)
def test_one_hot_matches_torch(indices, num_classes, device):
    idx = np.array(indices, dtype=np.int64)
    d = F.one_hot(to_distrain(idx, device), num_classes=num_classes)
    t = TF.one_hot(to_torch(idx), num_classes=num_classes)
    assert tuple(d.shape) == tuple(t.shape)
    assert d.dtype == distrain.int64
    assert str(d.device) == device
    np.testing.assert_array_equal(to_numpy(d), t.numpy())


def test_one_hot_positional_num_classes(device):
    idx = np.array([1, 0, 3], dtype=np.int64)
    np.testing.assert_array_equal(to_numpy(F.one_hot(to_distrain(idx, device), 4)),
                                  TF.one_hot(to_torch(idx), 4).numpy())


# --- cross_entropy ---------------------------------------------------------------------------

CE_CASES = {
    "mean": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "mean_ignore_default": dict(ignore=True),
    "sum_ignore_default": dict(reduction="sum", ignore=True),
    "none_ignore_default": dict(reduction="none", ignore=True),
    "mean_ignore_custom": dict(ignore_index=2),
    "none_ignore_custom": dict(reduction="none", ignore_index=2),
    "mean_smoothing": dict(label_smoothing=0.1),
    "sum_smoothing": dict(reduction="sum", label_smoothing=0.25),
    "none_smoothing": dict(reduction="none", label_smoothing=0.1),
    "mean_smoothing_ignore": dict(label_smoothing=0.2, ignore=True),
    "none_smoothing_ignore_custom": dict(reduction="none", label_smoothing=0.2, ignore_index=1),
    "sum_smoothing_ignore": dict(reduction="sum", label_smoothing=0.3, ignore=True),
}


def _ce_data(case, n=6, c=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c)) * 2.0
    target = rng.integers(0, c, size=n).astype(np.int64)
    target[:3] = [2, 1, 4]  # make sure custom ignore indices (1, 2) both occur
    kwargs = dict(CE_CASES[case])
    if kwargs.pop("ignore", False):
        target[[1, 4]] = -100
    return logits, target, kwargs


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy_matches_torch(case, dtype, device):
    logits, target, kwargs = _ce_data(case)
    check_op_against_torch(
        lambda x, y: F.cross_entropy(x, y, **kwargs), lambda x, y: TF.cross_entropy(x, y, **kwargs), [logits, target],
        dtype, device,
    )


@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy_finite_differences(case, device):
    logits, target, kwargs = _ce_data(case, seed=1)
    y = to_distrain(target, device)
    check_finite_differences(lambda x: F.cross_entropy(x, y, **kwargs), [logits], device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cross_entropy_large_logits_are_stable(dtype, device):
    logits, target, _ = _ce_data("mean")
    logits = logits * 500.0
    d_out, _ = check_op_against_torch(F.cross_entropy, TF.cross_entropy, [logits, target], dtype, device,
                                      rtol=1e-5, atol=1e-4)
    assert np.isfinite(to_numpy(d_out[0]))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cross_entropy_after_a_linear_layer(dtype, device):
    # a small graph: logits = x @ w + b, then the loss; gradients for w and b match torch
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((8, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    target = rng.integers(0, 4, size=8).astype(np.int64)
    check_op_against_torch(
        lambda x, w, b, y: F.cross_entropy(x @ w + b, y, label_smoothing=0.05),
        lambda x, w, b, y: TF.cross_entropy(x @ w + b, y, label_smoothing=0.05),
        [x, w, b, target], dtype, device,
    )


# --- cross_entropy beyond the basics: class weights, probability targets, extra dims --------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("variant", ["weight", "weight_ignore_smoothing", "prob_targets", "prob_targets_smoothing",
                                     "spatial", "spatial_ignore", "unbatched"])
def test_cross_entropy_variants(variant, reduction, dtype, device):
    rng = np.random.default_rng(30)
    n, c = 5, 4
    logits = rng.standard_normal((n, c))
    target = np.array([0, 3, 1, 3, 2], dtype=np.int64)
    kwargs = dict(reduction=reduction)
    weight = None
    if variant.startswith("weight"):
        weight = rng.uniform(0.2, 2.0, size=c)
    if variant == "weight_ignore_smoothing":
        target[1] = -100
        kwargs["label_smoothing"] = 0.15
    if variant.startswith("prob_targets"):
        target = rng.dirichlet(np.ones(c), size=n)
        if variant.endswith("smoothing"):
            kwargs["label_smoothing"] = 0.2
    if variant.startswith("spatial"):
        logits = rng.standard_normal((2, c, 3))
        target = rng.integers(0, c, size=(2, 3)).astype(np.int64)
        if variant.endswith("ignore"):
            target[0, 1] = target[1, 2] = -100
    if variant == "unbatched":
        logits, target = logits[0], np.array(2, dtype=np.int64)
    arrays = [logits, target] + ([weight] if weight is not None else [])
    requires_grad = [True, False, False]  # probability targets and class weights are constants here

    def d_fn(x, y, *w):
        return F.cross_entropy(x, y, weight=w[0] if w else None, **kwargs)

    def t_fn(x, y, *w):
        return TF.cross_entropy(x, y, weight=w[0] if w else None, **kwargs)

    check_op_against_torch(d_fn, t_fn, arrays, dtype, device, requires_grad=requires_grad[:len(arrays)])


def test_cross_entropy_mean_with_every_target_ignored(device):
    # torch: the mean loss is 0 / 0 = nan (without a warning) but its gradient is all zeros,
    # so a batch made only of padding does not poison the parameters; "sum" is 0
    logits = np.random.default_rng(31).standard_normal((3, 4))
    target = np.full(3, -100, dtype=np.int64)
    check_op_against_torch(F.cross_entropy, TF.cross_entropy, [logits, target], np.float64, device)
    f_sum = lambda lib_f: (lambda x, y: lib_f(x, y, reduction="sum"))  # noqa: E731
    check_op_against_torch(f_sum(F.cross_entropy), f_sum(TF.cross_entropy), [logits, target], np.float64, device)


# --- second derivatives (create_graph=True) ---------------------------------------------------


@pytest.mark.parametrize("name", ["relu_F", "leaky_relu_0.2", "gelu_exact", "gelu_tanh", "sigmoid_F", "tanh_F"])
def test_activation_second_derivative_matches_torch(name, device):
    d_fn, t_fn, domain = ACTIVATIONS[name]
    check_second_order_against_torch(d_fn, t_fn, [_x((3, 4), domain, seed=3)], np.float64, device)


@pytest.mark.parametrize("form", ["softmax_F", "log_softmax_F"])
def test_softmax_second_derivative_matches_torch(form, device):
    d_fn, t_fn = SOFTMAX_FORMS[form]
    check_second_order_against_torch(lambda x: d_fn(x, 1), lambda x: t_fn(x, 1), [_x((3, 4), seed=4)], np.float64,
                                     device)


@pytest.mark.parametrize("case", ["mean", "none", "mean_ignore_default", "mean_smoothing"])
def test_cross_entropy_second_derivative_matches_torch(case, device):
    logits, target, kwargs = _ce_data(case, seed=5)
    check_second_order_against_torch(lambda x, y: F.cross_entropy(x, y, **kwargs),
                                     lambda x, y: TF.cross_entropy(x, y, **kwargs), [logits, target], np.float64, device)
