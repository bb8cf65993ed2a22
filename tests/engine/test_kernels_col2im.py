"""col2im's kernel (distrain/engine/kernels/col2im.py): both paths bit for bit, and conv2d's input gradient
on each path against torch, for strides, padding wider than the reach of some taps, dilation and groups.
"""
import numpy as np
import pytest
import torch

import distrain
import distrain.engine.kernels as kernels
from distrain.engine.kernels import col2im as col2im_kernel
from distrain.engine.kernels.layout import memory_order
from distrain.engine.ops.conv import _geometry

# id -> (input shape, kernel, stride, padding, dilation)
CASES = {
    "3x3_s1_p1": ((2, 3, 6, 7), (3, 3), (1, 1), (1, 1), (1, 1)),
    "3x3_s2_p1": ((2, 2, 7, 6), (3, 3), (2, 2), (1, 1), (1, 1)),
    "5x3_s3x1_p2x0": ((2, 2, 9, 5), (5, 3), (3, 1), (2, 0), (1, 1)),
    "dilated_wide_pad": ((2, 2, 5, 6), (3, 2), (1, 2), (3, 2), (2, 3)),  # some taps read only padding
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_col2im_paths_agree_bit_for_bit(case, dtype, monkeypatch):
    shape, kernel, stride, padding, dilation = CASES[case]
    out_size, _ = _geometry(shape, kernel, stride, padding, dilation, False, "conv2d")
    rows = shape[1] * kernel[0] * kernel[1]
    cols_grad = np.random.default_rng(0).standard_normal((rows, shape[0] * out_size[0] * out_size[1])).astype(dtype)
    cols_grad.reshape(-1)[::7] = -0.0  # signed zeros: sums that start at +0.0 must round the same
    results = {}
    for name in ("numba", "numpy"):
        monkeypatch.setattr(kernels, "_path", name)
        results[name] = col2im_kernel.col2im(cols_grad, shape, kernel, stride, padding, dilation, tuple(out_size))
    compiled, reference = results["numba"], results["numpy"]
    assert compiled.shape == reference.shape == shape and compiled.dtype == dtype
    assert np.array_equal(np.ascontiguousarray(compiled).view(np.uint8), np.ascontiguousarray(reference).view(np.uint8))
    for result in (compiled, reference):  # (C, N, H, W) memory: the layout conv2d hands on
        assert memory_order(result) == (1, 0, 2, 3)


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_conv2d_input_gradient_matches_torch_on_each_path(case, groups, path, monkeypatch):
    monkeypatch.setattr(kernels, "_path", path)
    shape, kernel, stride, padding, dilation = CASES[case]
    shape = (shape[0], 2 * groups, *shape[2:])
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((2 * groups, 2, *kernel))
    grads = []
    for lib in (torch, distrain):
        xt, wt = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
        out = lib.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation, groups=groups)
        upstream = np.random.default_rng(2).standard_normal(tuple(out.shape))
        (out * lib.tensor(upstream)).sum().backward()
        grads.append(xt.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-10, atol=1e-12)
