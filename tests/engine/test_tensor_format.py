"""`format(tensor, spec)` against PyTorch: a 0-d tensor formats as its number; others raise for any spec."""
import numpy as np
import pytest
import torch

import distrain

SPECS = ["", ".2f", ".3f", ">10.4f", "<8.1e", "+.3g", ".1%", "e"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("value, dtype", [(0.123456789, np.float32), (-2.5, np.float64), (1e-7, np.float32)])
def test_a_0d_float_tensor_formats_as_pytorchs(value, dtype, spec):
    array = np.asarray(value, dtype=dtype)
    assert format(distrain.tensor(array), spec) == format(torch.tensor(array), spec)


@pytest.mark.parametrize("spec", ["", "d", ">5", "+d", "x", ".2f"])
def test_a_0d_integer_tensor_formats_as_pytorchs(spec):
    assert format(distrain.tensor(42), spec) == format(torch.tensor(42), spec)


@pytest.mark.parametrize("spec", ["", ">6"])
def test_a_0d_bool_tensor_formats_as_pytorchs(spec):
    assert format(distrain.tensor(True), spec) == format(torch.tensor(True), spec)


def test_f_strings_of_a_loss_match_pytorch():
    values = np.array([[0.25, 1.5], [3.0, -4.125]], dtype=np.float32)
    ours, theirs = distrain.tensor(values), torch.tensor(values)
    assert f"loss {ours.mean():.4f} max {ours.max():8.2f}" == f"loss {theirs.mean():.4f} max {theirs.max():8.2f}"


def test_a_0d_tensor_in_the_graph_formats_its_value():
    values = np.array([0.5, 2.0], dtype=np.float32)
    ours = (distrain.tensor(values, requires_grad=True) ** 2).sum()
    theirs = (torch.tensor(values, requires_grad=True) ** 2).sum()
    assert f"{ours:.3f}" == f"{theirs:.3f}"


@pytest.mark.parametrize("shape", [(2,), (1,), (2, 2), (0,)])
def test_other_tensors_raise_for_a_spec_as_pytorch(shape):
    values = np.ones(shape, dtype=np.float32)
    with pytest.raises(TypeError) as theirs:
        format(torch.tensor(values), ".2f")
    with pytest.raises(TypeError) as ours:
        format(distrain.tensor(values), ".2f")
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("shape", [(2,), (2, 2)])
def test_other_tensors_format_as_their_str_with_an_empty_spec(shape):
    tensor = distrain.ones(*shape)
    assert format(tensor, "") == str(tensor) == f"{tensor}"


def test_a_0d_parameter_raises_for_a_spec_as_pytorch():
    with pytest.raises(TypeError) as theirs:
        format(torch.nn.Parameter(torch.tensor(0.5)), ".2f")
    with pytest.raises(TypeError) as ours:
        format(distrain.nn.Parameter(distrain.tensor(0.5)), ".2f")
    assert str(ours.value) == str(theirs.value)
