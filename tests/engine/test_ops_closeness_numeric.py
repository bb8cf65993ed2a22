"""isclose / allclose / equal, isnan / isinf / isfinite, lerp, nan_to_num against PyTorch (values,
dtypes, gradients, in-place forms), and the errors for mismatched shapes and dtypes."""
import numpy as np
import pytest
import torch

import distrain

from .oracle import (
    FLOAT_DTYPES,
    check_finite_differences,
    check_op_against_torch,
    pair,
    to_distrain,
    to_torch,
)

RNG = np.random.default_rng(6)
SPECIAL = np.array([[1.0, np.nan, np.inf, -np.inf, 0.0], [-2.5, 1e-9, np.nan, 3.0, -0.0]])
NEARLY = SPECIAL + np.array([[1e-6, 0.0, 0.0, 0.0, 1e-9], [1e-3, 0.0, 1.0, 0.0, 0.0]])

CLOSENESS = {
    "isclose": lambda lib, a, b: lib.isclose(a, b),
    "isclose_tolerances": lambda lib, a, b: a.isclose(b, rtol=1e-3, atol=1e-4),
    "isclose_equal_nan": lambda lib, a, b: lib.isclose(a, b, equal_nan=True),
    "isclose_broadcast": lambda lib, a, b: lib.isclose(a, b[:1]),
    "isnan": lambda lib, a, b: lib.isnan(a),
    "isinf_method": lambda lib, a, b: a.isinf(),
    "isfinite": lambda lib, a, b: lib.isfinite(b),
}


@pytest.mark.parametrize("name", CLOSENESS)
def test_elementwise_tests_against_torch(name):
    check_op_against_torch(*pair(CLOSENESS[name]), [SPECIAL, NEARLY], FLOAT_DTYPES, grad=False)


@pytest.mark.parametrize("pairs", [
    (SPECIAL, NEARLY, {}), (SPECIAL, SPECIAL, {}), (SPECIAL, SPECIAL, {"equal_nan": True}),
    (SPECIAL[:, [0, 3, 4]], NEARLY[:, [0, 3, 4]], {}), (SPECIAL[:, [0, 3, 4]], NEARLY[:, [0, 3, 4]], {"atol": 1e-2}),
])
def test_allclose_and_equal_answer_as_torch(pairs):
    a, b, options = pairs
    for function in ("allclose", "equal"):
        kwargs = options if function == "allclose" else {}
        mine = getattr(distrain, function)(to_distrain(a), to_distrain(b), **kwargs)
        theirs = getattr(torch, function)(to_torch(a), to_torch(b), **kwargs)
        assert type(mine) is bool and mine == theirs, (function, options)
    assert distrain.equal(to_distrain(a[:1]), to_distrain(a)) is False
    assert to_distrain(a[:, :1]).allclose(to_distrain(a[:, :1]))


NUMERIC = {
    "lerp_scalar": (lambda lib, a, b: lib.lerp(a, b, 0.3), [RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))]),
    "lerp_tensor_weight": (lambda lib, a, b, w: a.lerp(b, w), [RNG.standard_normal((3, 4)), RNG.standard_normal((4,)),
                                                              RNG.uniform(0, 1, (3, 1))]),
    "nan_to_num": (lambda lib, a: lib.nan_to_num(a), [SPECIAL]),
    "nan_to_num_values": (lambda lib, a: a.nan_to_num(nan=1.5, posinf=9.0, neginf=-7.0), [SPECIAL]),
    "nan_to_num_partial": (lambda lib, a: a.nan_to_num(posinf=100.0), [SPECIAL]),
}


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_against_torch(name):
    fn, arrays = NUMERIC[name]
    check_op_against_torch(*pair(fn), arrays, FLOAT_DTYPES)


def test_lerp_finite_differences():
    check_finite_differences(pair(NUMERIC["lerp_tensor_weight"][0])[0], NUMERIC["lerp_tensor_weight"][1])


def test_in_place_lerp_and_nan_to_num():
    for name, args in (("lerp_", (np.ones(5), 0.25)), ("nan_to_num_", (0.0,))):
        results = []
        for lib in (distrain, torch):
            x = lib.tensor(np.nan_to_num(SPECIAL[0]) if name == "lerp_" else SPECIAL[0].copy())
            call_args = [lib.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
            assert getattr(x, name)(*call_args) is x
            results.append(x.numpy().copy())
        np.testing.assert_array_equal(*results)


def test_integer_nan_to_num_is_a_copy():
    check_op_against_torch(*pair(lambda lib, a: lib.nan_to_num(a)), [np.arange(4)])


@pytest.mark.parametrize("call, error, message", [
    (lambda lib, a, b: lib.isclose(a, b[:, :2]), distrain.ShapeError, "(2, 5) and (2, 2)"),
    (lambda lib, a, b: lib.isclose(a, b.float()), distrain.DTypeError, "same dtype"),
    (lambda lib, a, b: lib.lerp(a, b.float(), 0.5), distrain.DTypeError, "same dtype"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(distrain, to_distrain(SPECIAL), to_distrain(NEARLY))
    with pytest.raises(RuntimeError):
        call(torch, to_torch(SPECIAL), to_torch(NEARLY))
