"""The rounding, reciprocal, log/exp-in-other-bases, trigonometric and hyperbolic functions, atan2,
addcmul/addcdiv, clamp_min/clamp_max, and the in-place forms of the unary functions, against PyTorch."""
import numpy as np
import pytest
import torch

import distrain

from .oracle import FLOAT_DTYPES, check_finite_differences, check_op_against_torch, pair

RNG = np.random.default_rng(8)
ANY = RNG.standard_normal((3, 4)) * 2
POSITIVE = RNG.uniform(0.5, 2.0, (3, 4))
UNIT = RNG.uniform(-0.9, 0.9, (3, 4))
ABOVE_ONE = RNG.uniform(1.2, 3.0, (3, 4))

UNARY = {
    "floor": ANY, "ceil": ANY, "round": ANY, "trunc": ANY, "frac": ANY, "reciprocal": POSITIVE, "rsqrt": POSITIVE,
    "log2": POSITIVE, "log10": POSITIVE, "exp2": ANY, "tan": UNIT, "asin": UNIT, "acos": UNIT, "atan": ANY,
    "sinh": ANY, "cosh": ANY, "asinh": ANY, "acosh": ABOVE_ONE, "atanh": UNIT,
}


@pytest.mark.parametrize("name", UNARY)
def test_unary_against_torch(name):
    check_op_against_torch(lambda x: getattr(distrain, name)(x), lambda x: getattr(torch, name)(x), [UNARY[name]],
                           FLOAT_DTYPES)
    check_op_against_torch(lambda x: getattr(x, name)(), lambda x: getattr(x, name)(), [UNARY[name]])


@pytest.mark.parametrize("name", [n for n in UNARY if n not in ("floor", "ceil", "round", "trunc")])
def test_unary_finite_differences(name):
    check_finite_differences(getattr(distrain, name), [UNARY[name]])


OTHERS = {
    "round_decimals": (lambda lib, x: lib.round(x * 100, decimals=-1), [ANY]),
    "atan2": (lambda lib, y, x: lib.atan2(y, x), [ANY, ANY[::-1]]),
    "atan2_broadcast_method": (lambda lib, y, x: y.atan2(x), [ANY, POSITIVE[0]]),
    "addcmul": (lambda lib, a, b, c: lib.addcmul(a, b, c, value=0.5), [ANY, POSITIVE, UNIT[0]]),
    "addcdiv": (lambda lib, a, b, c: a.addcdiv(b, c, value=-2), [ANY, UNIT, POSITIVE]),
    "clamp_min": (lambda lib, x: lib.clamp_min(x, 0.3), [ANY]),
    "clamp_max_method": (lambda lib, x: x.clamp_max(-0.1), [ANY]),
    "aliases": (lambda lib, x, y: lib.absolute(x) + lib.arctan2(x, y) + lib.negative(x) + x.fix()
                + x.multiply(y).divide(y).subtract(x), [ANY, POSITIVE]),
}


@pytest.mark.parametrize("name", OTHERS)
def test_others_against_torch(name):
    fn, arrays = OTHERS[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


def test_integers_round_to_themselves():
    for name in ("floor", "ceil", "round", "trunc"):
        check_op_against_torch(*pair(lambda lib, x, name=name: getattr(lib, name)(x)), [np.arange(-3, 3)])


IN_PLACE = ["exp_", "log_", "sqrt_", "neg_", "abs_", "sigmoid_", "tanh_", "sin_", "cos_", "floor_", "ceil_", "round_",
            "trunc_", "reciprocal_", "rsqrt_", "frac_", "log1p_", "expm1_", "square_"]


@pytest.mark.parametrize("name", IN_PLACE)
@pytest.mark.parametrize("recorded", [False, True])
def test_unary_in_place_against_torch(name, recorded):
    results = []
    for lib in (distrain, torch):
        leaf = lib.tensor(POSITIVE, requires_grad=recorded)
        x = leaf * 1.0 if recorded else leaf
        assert getattr(x, name)() is x
        if recorded:
            (x * lib.tensor(ANY)).sum().backward()
        results.append([x.detach().numpy().copy()] + ([leaf.grad.numpy().copy()] if recorded else []))
    for mine, theirs in zip(*results):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, args", [("addcmul_", (UNIT, POSITIVE)), ("addcdiv_", (UNIT, POSITIVE)),
                                        ("clamp_min_", (0.9,)), ("clamp_max_", (1.1,)), ("sign_", ())])
def test_other_in_place_forms(name, args):
    results = []
    for lib in (distrain, torch):
        x = lib.tensor(POSITIVE)
        assert getattr(x, name)(*[lib.tensor(a) if isinstance(a, np.ndarray) else a for a in args]) is x
        results.append(x.numpy().copy())
    np.testing.assert_allclose(*results, rtol=1e-12)


def test_atan2_shape_error_names_shapes():
    with pytest.raises(distrain.ShapeError, match=r"\(3, 4\) and \(3,\)"):
        distrain.atan2(distrain.tensor(ANY), distrain.tensor(ANY[:, 0]))
    with pytest.raises(RuntimeError):
        torch.atan2(torch.tensor(ANY), torch.tensor(ANY[:, 0]))


COMPOSED = {
    "hypot": (lambda lib, a, b: lib.hypot(a, b), [ANY, POSITIVE]),
    "logaddexp": (lambda lib, a, b: lib.logaddexp(a * 30, b * 30), [ANY, ANY[::-1]]),
    "logaddexp_method_tie": (lambda lib, a, b: a.logaddexp(a), [ANY, ANY]),
    "logit": (lambda lib, p, b: lib.logit(p), [UNIT * 0.5 + 0.5, ANY]),
    "logit_eps_method": (lambda lib, p, b: (p * 1.2 - 0.1).logit(eps=1e-3), [UNIT * 0.5 + 0.5, ANY]),
    "xlogy": (lambda lib, x, y: lib.xlogy(x, y), [np.where(ANY > 0, ANY, 0.0), POSITIVE]),
    "deg2rad_rad2deg": (lambda lib, a, b: lib.deg2rad(a) + b.rad2deg(), [ANY, UNIT]),
    "dist": (lambda lib, a, b: lib.dist(a, b), [ANY, POSITIVE]),
    "dist_p1_method": (lambda lib, a, b: a.dist(b[0], p=1), [ANY, POSITIVE]),
    "square_and_numel": (lambda lib, a, b: lib.square(a) * lib.numel(b), [ANY, POSITIVE]),
    "sgn": (lambda lib, a, b: lib.sgn(a.detach()) + a.detach().sgn() + b, [ANY, POSITIVE]),
    "logical": (lambda lib, a, b: lib.logical_and(a > 0, b > 1) ^ lib.logical_or(a > 1, lib.logical_not(b > 1))
                ^ lib.logical_xor(a > 0, b < 1), [ANY, POSITIVE]),
    "tensor_basics": (lambda lib, a, b: a.t().contiguous().split_with_sizes([1, 3], 0)[1].sum_to_size(1, 3)
                      * a.nelement() * a.ndimension(), [ANY, POSITIVE]),
}


@pytest.mark.parametrize("name", COMPOSED)
def test_composed_against_torch(name):
    fn, arrays = COMPOSED[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


def test_xlogy_where_both_are_zero():
    """The value and input's gradient are PyTorch's; other's gradient there is 0 (PyTorch's is 0/0 = NaN)."""
    x, y = np.where(ANY > 0, ANY, 0.0), np.where(ANY > 0, POSITIVE, 0.0)
    check_op_against_torch(*pair(lambda lib, a, b: a.xlogy(b)), [x, y], FLOAT_DTYPES, requires_grad=[True, False])


def test_strides_are_in_elements():
    for lib in (distrain, torch):
        x = lib.zeros(3, 4, 5)
        assert x.stride() == (20, 5, 1) and x.transpose(0, 2).stride() == (1, 5, 20) and x.stride(1) == 5
