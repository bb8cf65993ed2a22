"""Anomaly mode names the first backward op producing NaN, with its forward stack (as PyTorch does),
and isnan / isinf / isfinite match PyTorch's.

Each case runs the same code under torch.autograd.detect_anomaly and distrain's, on the same
numbers: where PyTorch raises, distrain raises the same message (the op's name and which of
its outputs); where PyTorch passes, distrain passes, with the same gradients. Infinite
gradients are distrain's one addition: PyTorch lets them through, distrain reports them.
"""
import doctest
import re
import threading
import warnings

import numpy as np
import pytest
import torch

import distrain
import distrain.nn.functional as F
from distrain.engine.autograd import anomaly_mode
from distrain.errors import AutogradError

from .oracle import to_distrain, to_numpy, to_torch


@pytest.fixture(autouse=True)
def anomaly_mode_off_after_each_test():
    yield
    distrain.autograd.set_detect_anomaly(False)
    torch.autograd.set_detect_anomaly(False)


def double_nan(lib):
    """The same user Function for either library: its backward returns NaN."""
    class DoubleNaN(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * float("nan")

    return DoubleNaN


# name -> (fn(lib, *tensors) -> loss, input arrays); the same code for both libraries
CASES = {
    "zero over zero": (lambda lib, x, y: (x / y).sum(), [[0.0, 1.0], [0.0, 2.0]]),
    "log of a negative": (lambda lib, a: (a * lib.log(a - 1.5)).sum(), [[1.0, 2.0]]),
    "sqrt at zero times zero": (lambda lib, z: (lib.sqrt(z) * 0).sum(), [[0.0, 4.0]]),
    "pow with a nan exponent": (lambda lib, x: (x ** float("nan")).sum(), [[1.0, 2.0]]),
    "mm of a nan upstream": (lambda lib, a, b: (lib.mm(a, b) * lib.tensor(float("nan"))).sum(),
                             [[[1.0, 2.0]], [[3.0], [4.0]]]),
    "a Function's backward": (lambda lib, x: double_nan(lib).apply(x).sum(), [[1.0, 2.0]]),
    "finite": (lambda lib, x, y: (x * y + lib.exp(x)).sum(), [[0.5, 1.0], [2.0, -1.0]]),
    "nan in the forward only": (lambda lib, x: (lib.where(x > 0, x, x * float("nan"))).sum(), [[1.0, 2.0]]),
}


def run(lib, fn, arrays, **options):
    """(gradients or the error message) of fn's loss under lib's detect_anomaly."""
    make = to_torch if lib is torch else to_distrain
    leaves = [make(np.array(array, dtype=np.float64), requires_grad=True) for array in arrays]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch warns that anomaly mode is slow, and prints the forward trace
            with lib.autograd.detect_anomaly(**options):
                fn(lib, *leaves).backward()
    except RuntimeError as error:
        return str(error).split("\n")[0]
    return [to_numpy(leaf.grad) for leaf in leaves]


@pytest.mark.parametrize("name", list(CASES))
def test_the_first_nan_producing_backward_op_is_named_as_pytorch_names_it(name):
    fn, arrays = CASES[name]
    expected, ours = run(torch, fn, arrays), run(distrain, fn, arrays)
    if isinstance(expected, str):
        assert re.match(r"Function '\w+' returned nan values in its \d+th output\.", expected), expected
        assert isinstance(ours, str) and ours.startswith(expected), (ours, expected)
    else:
        assert not isinstance(ours, str), ours
        for mine, theirs in zip(ours, expected):
            np.testing.assert_allclose(mine, theirs, rtol=1e-12)


def test_the_error_is_an_autograd_error_showing_the_forward_line_that_created_the_op():
    x = distrain.tensor([0.0, 1.0], requires_grad=True)
    with distrain.autograd.detect_anomaly(), np.errstate(all="ignore"):
        ratio = x / x  # the line the error must point at
        with pytest.raises(AutogradError) as caught:
            ratio.sum().backward()
    message = str(caught.value)
    # x / x: its 0th gradient (1/x) is inf at 0, its 1st (-x/x**2) NaN; NaN is reported first, as in PyTorch
    assert message.startswith("Function 'DivBackward0' returned nan values in its 1th output.")
    assert "Traceback of the forward call that created it:" in message
    assert "ratio = x / x  # the line the error must point at" in message
    assert __file__ in message and "distrain/engine" not in message.split("created it:")[1]


def test_an_infinite_gradient_passes_as_in_pytorch_and_is_named_with_check_inf():
    """sqrt's gradient at 0 is inf: PyTorch passes it on, and so does distrain by default;
    check_inf=True (distrain's own) names SqrtBackward0."""
    sqrt_loss = lambda lib, z: lib.sqrt(z).sum()  # noqa: E731
    expected, ours = run(torch, sqrt_loss, [[0.0, 4.0]]), run(distrain, sqrt_loss, [[0.0, 4.0]])
    assert not isinstance(expected, str) and not isinstance(ours, str), (expected, ours)
    for mine, theirs in zip(ours, expected):
        np.testing.assert_array_equal(mine, theirs)
    message = run(distrain, sqrt_loss, [[0.0, 4.0]], check_inf=True)
    assert message == "Function 'SqrtBackward0' returned inf values in its 0th output. Traceback of the forward " \
                      "call that created it:"
    with distrain.autograd.set_detect_anomaly(True, check_inf=True):
        assert distrain.autograd.anomaly_mode.state.check_inf
    assert not distrain.autograd.anomaly_mode.state.check_inf


def test_check_nan_false_records_stacks_but_lets_nan_through_as_pytorch_does():
    fn, arrays = CASES["zero over zero"]
    expected, ours = run(torch, fn, arrays, check_nan=False), run(distrain, fn, arrays, check_nan=False)
    for mine, theirs in zip(ours, expected):
        np.testing.assert_array_equal(mine, theirs)


def test_an_exception_in_a_backward_formula_gets_the_forward_stack_as_a_note():
    class Broken(distrain.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, grad):
            raise ValueError("a bug in a backward formula")

    x = distrain.ones(2, requires_grad=True)
    with distrain.autograd.detect_anomaly():
        y = Broken.apply(x)  # created here
        with pytest.raises(ValueError, match="a bug in a backward formula") as caught:
            y.sum().backward()
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    if hasattr(caught.value, "add_note"):
        assert "Error detected in BrokenBackward." in notes and "y = Broken.apply(x)  # created here" in notes


def test_an_op_recorded_before_anomaly_mode_says_so():
    x = distrain.tensor([0.0, 1.0], requires_grad=True)
    with np.errstate(all="ignore"):
        y = x / x
    with distrain.autograd.detect_anomaly(), np.errstate(all="ignore"):
        with pytest.raises(AutogradError, match="ran before anomaly mode was on"):
            y.sum().backward()


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
def test_set_detect_anomaly_and_the_queries_follow_pytorch():
    for lib in (torch, distrain):
        assert not lib.is_anomaly_enabled() and lib.is_anomaly_check_nan_enabled()
        with lib.autograd.detect_anomaly(check_nan=False):
            assert lib.is_anomaly_enabled() and not lib.is_anomaly_check_nan_enabled()
        assert not lib.is_anomaly_enabled() and lib.is_anomaly_check_nan_enabled()
        lib.autograd.set_detect_anomaly(True)  # on at once, with or without `with`
        assert lib.is_anomaly_enabled()
        lib.autograd.set_detect_anomaly(False)
        with lib.autograd.set_detect_anomaly(True):
            assert lib.is_anomaly_enabled()
        assert not lib.is_anomaly_enabled()
    assert distrain.autograd.is_anomaly_enabled is distrain.is_anomaly_enabled


def test_the_mode_is_global_like_pytorchs():
    seen = []
    with distrain.autograd.detect_anomaly():
        thread = threading.Thread(target=lambda: seen.append(distrain.is_anomaly_enabled()))
        thread.start()
        thread.join(timeout=30)
    assert seen == [True]


def test_no_stack_is_recorded_when_the_mode_is_off(monkeypatch):
    """Costs nothing when off: no stack is captured at any op."""
    calls = []
    monkeypatch.setattr(anomaly_mode, "forward_stack", lambda: calls.append(1) or [])
    x = distrain.randn(4, 3, requires_grad=True)
    loss = F.linear(x, distrain.randn(2, 3)).relu().sum()
    loss.backward()
    assert calls == [] and loss.grad_fn.forward_stack is None
    with distrain.autograd.detect_anomaly():
        F.linear(x, distrain.randn(2, 3)).relu().sum().backward()
    assert len(calls) == 3


def test_the_module_docstring_example_runs():
    result = doctest.testmod(anomaly_mode, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


# ----------------------------------------------------------------------------- isnan, isinf, isfinite

SPECIAL = np.array([0.0, -1.5, np.nan, np.inf, -np.inf, 3e38, -0.0])


@pytest.mark.parametrize("name", ["isnan", "isinf", "isfinite"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.bool_])
def test_isnan_isinf_isfinite_match_pytorch(name, dtype, device):
    with np.errstate(over="ignore", invalid="ignore"):
        values = SPECIAL.astype(dtype)
    for array in (values, values.reshape(1, 7)[:, ::2], np.asarray(values[2])):
        ours = to_distrain(array, device)
        expected = to_numpy(getattr(torch, name)(to_torch(array)))
        for result in (getattr(distrain, name)(ours), getattr(ours, name)()):
            assert result.dtype == distrain.bool and not result.requires_grad and str(result.device) == device
            np.testing.assert_array_equal(to_numpy(result), expected)
    grad_leaf = to_distrain(np.array([1.0, np.nan]), device, requires_grad=True)
    assert not getattr(grad_leaf, name)().requires_grad
