"""ReLU's kernels (distrain/engine/kernels/relu.py): both paths bit for bit, against torch, through the op.

The choice of path is monkeypatched, so the compiled loops and their NumPy reference
run on every case; second derivatives (create_graph) keep the differentiable backward.
"""
import numpy as np
import pytest
import torch

import distrain
import distrain.engine.kernels as kernels
from distrain.engine.kernels import relu as relu_kernels

from .oracle import check_second_order_against_torch


def _special(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    for value in (np.nan, -np.inf, np.inf, -0.0, 0.0):
        flat[rng.integers(0, flat.size, max(1, flat.size // 10))] = value
    return x


LAYOUTS = {
    "contiguous": lambda a: a,
    "channel_major": lambda a: np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),
    "strided": lambda a: np.repeat(a, 2, axis=3)[..., ::2],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_paths_agree_bit_for_bit(dtype, layout, monkeypatch):
    x = LAYOUTS[layout](_special((3, 4, 5, 6), dtype))
    grad = LAYOUTS[layout](_special((3, 4, 5, 6), dtype, seed=1))
    results = {}
    for name in ("numba", "numpy"):
        monkeypatch.setattr(kernels, "_path", name)
        out = relu_kernels.relu_forward(x)
        results[name] = (out, relu_kernels.relu_backward(grad, out))
    for compiled, reference in zip(results["numba"], results["numpy"]):
        assert compiled.dtype == reference.dtype and compiled.shape == reference.shape
        assert np.array_equal(np.ascontiguousarray(compiled).view(np.uint8),
                              np.ascontiguousarray(reference).view(np.uint8))
    out = results["numba"][0]
    assert out.strides == np.maximum(x, 0).strides or layout == "strided"  # memory order kept


@pytest.mark.parametrize("path", ["numba", "numpy"])
def test_relu_op_matches_torch_forward_and_backward(path, monkeypatch):
    monkeypatch.setattr(kernels, "_path", path)
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    d = distrain.tensor(x, requires_grad=True)
    t = torch.tensor(x, requires_grad=True)
    d_out, t_out = distrain.relu(d), torch.relu(t)
    d_out.backward(distrain.tensor(g))
    t_out.backward(torch.tensor(g))
    np.testing.assert_array_equal(d_out.detach().numpy(), t_out.detach().numpy())
    np.testing.assert_array_equal(d.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("path", ["numba", "numpy"])
def test_relu_second_derivatives_still_differentiate_the_backward(path, monkeypatch):
    monkeypatch.setattr(kernels, "_path", path)
    x = np.random.default_rng(0).standard_normal((3, 4))
    check_second_order_against_torch(lambda a: distrain.relu(a) * a, lambda a: torch.relu(a) * a, [x])


def test_relu_of_a_0d_tensor_and_float16_take_the_reference(monkeypatch):
    monkeypatch.setattr(kernels, "_path", "numba")
    assert float(distrain.relu(distrain.tensor(-2.0))) == 0.0
    half = np.array([-1.0, 2.0], np.float16)
    assert relu_kernels.relu_forward(half).dtype == np.float16
