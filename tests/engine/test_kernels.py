"""distrain.engine.kernels: the path choice, and max-pool's compiled loops against their NumPy reference and torch.

Both paths run on every case (the choice is monkeypatched) and must agree bit for bit,
on ties, NaN, all -inf windows, padding, overlap (stride < kernel), dilation, ceil_mode.
"""
import numpy as np
import pytest
import torch

import distrain.engine.kernels as kernels
from distrain.engine.kernels import max_pool
from distrain.engine.ops.conv import _geometry
from distrain.errors import ArgumentError

# id -> (kernel, stride, padding, dilation, ceil_mode, input shape)
CASES = {
    "k2": ((2, 2), (2, 2), (0, 0), (1, 1), False, (2, 3, 6, 6)),  # the unrolled 2x2 loop
    "k2_odd": ((2, 2), (2, 2), (0, 0), (1, 1), False, (2, 3, 7, 5)),  # the 2x2 loop, last row/column unread
    "k2_ceil": ((2, 2), (2, 2), (0, 0), (1, 1), True, (1, 2, 7, 5)),  # partial windows: the general loop
    "k3_s1_overlap": ((3, 3), (1, 1), (0, 0), (1, 1), False, (2, 2, 6, 7)),
    "k3_s2_p1": ((3, 3), (2, 2), (1, 1), (1, 1), False, (2, 2, 7, 6)),
    "pair_kernel": ((2, 3), (1, 2), (1, 0), (1, 1), False, (1, 2, 5, 7)),
    "dilation": ((3, 2), (2, 1), (1, 1), (2, 3), False, (1, 2, 9, 9)),
    "ceil_mode": ((3, 3), (2, 2), (1, 1), (1, 1), True, (1, 2, 6, 7)),
}


@pytest.fixture(params=["numba", "numpy"])
def path(request, monkeypatch):
    monkeypatch.setattr(kernels, "_path", request.param)
    return request.param


def _inputs(shape, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few distinct values: many tied windows
        return rng.integers(-2, 2, shape).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    if kind in ("special", "no_nan"):  # no_nan: NumPy's reference takes its fast passes
        flat = x.reshape(-1)
        if kind == "special":
            flat[rng.integers(0, flat.size, max(1, flat.size // 10))] = np.nan
        flat[rng.integers(0, flat.size, max(1, flat.size // 5))] = -np.inf
        flat[rng.integers(0, flat.size, max(1, flat.size // 5))] = -0.0
        flat[rng.integers(0, flat.size, max(1, flat.size // 5))] = 0.0
    return x


def _run(x, case, grad):
    kernel, stride, padding, dilation, ceil_mode, _ = CASES[case]
    out_size, _ = _geometry(x.shape, kernel, stride, padding, dilation, ceil_mode, "max_pool2d")
    best, taps = max_pool.max_pool2d_forward(x, kernel, stride, padding, dilation, tuple(out_size))
    g = grad(best.shape)
    return best, taps, g, max_pool.max_pool2d_backward(g, taps, x.shape, kernel, stride, padding, dilation)


@pytest.mark.parametrize("layout", ["nchw", "channel_major"])
@pytest.mark.parametrize("kind", ["distinct", "ties", "special", "no_nan"])
@pytest.mark.parametrize("case", list(CASES))
def test_max_pool_paths_agree_bit_for_bit_and_with_torch(case, kind, layout, monkeypatch):
    x = _inputs(CASES[case][-1], kind)
    if layout == "channel_major":  # what distrain's conv2d hands on (NOTE [ Convolution layout ])
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    rng = np.random.default_rng(1)
    grads = {}

    def grad(shape):
        if "g" not in grads:
            grads["g"] = rng.standard_normal(shape).astype(np.float32)
            if kind == "special":  # a non-finite gradient: the reference's exact (masked) routing
                grads["g"].reshape(-1)[::7] = np.inf
            if kind == "no_nan":  # -0.0 gradients: a pixel's sum from zero is +0.0 on both paths
                grads["g"].reshape(-1)[::5] = -0.0
        return grads["g"]

    results = {}
    for name in ("numba", "numpy"):
        monkeypatch.setattr(kernels, "_path", name)
        results[name] = _run(x, case, grad)
    for compiled, reference in zip(results["numba"], results["numpy"]):
        assert compiled.dtype == reference.dtype
        assert np.array_equal(compiled.view(np.uint8), reference.view(np.uint8))  # bit for bit, NaN and -0.0 too
    kernel, stride, padding, dilation, ceil_mode, _ = CASES[case]
    t = torch.tensor(x, requires_grad=True)
    t_out, t_index = torch.nn.functional.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode, True)
    t_out.backward(torch.tensor(grads["g"]))
    best, taps, _, grad_input = results["numba"]
    np.testing.assert_array_equal(best, t_out.detach().numpy())
    assert np.array_equal(np.signbit(best), np.signbit(t_out.detach().numpy()))
    rows = (np.arange(best.shape[2]) * stride[0] - padding[0]).reshape(-1, 1) + taps.astype(np.int64) // kernel[1] * dilation[0]
    cols = (np.arange(best.shape[3]) * stride[1] - padding[1]).reshape(1, -1) + taps.astype(np.int64) % kernel[1] * dilation[1]
    np.testing.assert_array_equal(rows * x.shape[3] + cols, t_index.numpy())
    np.testing.assert_allclose(grad_input, t.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_results_keep_the_input_memory_order(path):
    x = np.ascontiguousarray(np.ones((3, 2, 4, 4), np.float32)).transpose(1, 0, 2, 3)
    best, taps = max_pool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
    assert best.transpose(1, 0, 2, 3).flags.c_contiguous and taps.dtype == np.uint8
    grad = max_pool.max_pool2d_backward(np.ones((2, 3, 2, 2), np.float32), taps, x.shape, (2, 2), (2, 2), (0, 0), (1, 1))
    assert grad.transpose(1, 0, 2, 3).flags.c_contiguous


def test_the_choice_comes_from_DISTRAIN_KERNELS(monkeypatch):
    monkeypatch.setattr(kernels, "_path", None)
    monkeypatch.setenv("DISTRAIN_KERNELS", "numpy")
    assert kernels.active() == "numpy"
    monkeypatch.setattr(kernels, "_path", None)
    monkeypatch.setenv("DISTRAIN_KERNELS", "numba")
    assert kernels.active() == "numba"  # numba is installed with the test extra
    monkeypatch.setattr(kernels, "_path", None)
    monkeypatch.setenv("DISTRAIN_KERNELS", "fast")
    with pytest.raises(ArgumentError, match="DISTRAIN_KERNELS='fast'.*auto, numba, numpy"):
        kernels.active()


def test_asking_for_numba_without_it_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setattr(kernels, "_path", None)
    monkeypatch.setenv("DISTRAIN_KERNELS", "numba")
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    with pytest.raises(ArgumentError, match="pip install"):
        kernels.active()
    monkeypatch.setenv("DISTRAIN_KERNELS", "auto")
    assert kernels._choose("auto") == "numpy"


def test_import_distrain_does_not_import_numba():
    import subprocess
    import sys

    code = "import sys, distrain; print('numba' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("case", ["k3_s2_p1", "ceil_mode", "dilation"])
def test_all_minus_inf_windows_take_their_first_tap_inside_on_both_paths(case, monkeypatch):
    x = np.full(CASES[case][-1], -np.inf, np.float32)
    x[..., -1, -1] = -0.0  # one finite window corner; every other window holds only -inf
    kernel, stride, padding, dilation, ceil_mode, _ = CASES[case]
    _, t_index = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride, padding, dilation, ceil_mode, True)
    results = {}
    for name in ("numba", "numpy"):
        monkeypatch.setattr(kernels, "_path", name)
        results[name] = _run(x, case, lambda shape: np.ones(shape, np.float32))
        taps = results[name][1].astype(np.int64)
        best = results[name][0]
        rows = (np.arange(best.shape[2]) * stride[0] - padding[0]).reshape(-1, 1) + taps // kernel[1] * dilation[0]
        cols = (np.arange(best.shape[3]) * stride[1] - padding[1]).reshape(1, -1) + taps % kernel[1] * dilation[1]
        np.testing.assert_array_equal(rows * x.shape[3] + cols, t_index.numpy())
    for compiled, reference in zip(results["numba"], results["numpy"]):
        assert np.array_equal(compiled.view(np.uint8), reference.view(np.uint8))
