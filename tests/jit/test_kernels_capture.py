"""distrain.jit captures the compiled kernels (max pooling, ReLU) as one call each, on both kernel paths.

A CNN with ReLU and MaxPool2d trains through compile_step bit for bit like eager, with
the numba loops and with the NumPy reference forced; its saved step, loaded again,
goes on training exactly as the original would.
"""
import numpy as np
import pytest

import distrain
import distrain.engine.kernels as kernels
from distrain import nn
from distrain.engine import jit

from .steps import training_step


def _model():
    distrain.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 5))


def _trainer(compiled):
    model = _model()
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, training_step(model, nn.CrossEntropyLoss(), optimizer, compiled)


def _batches(count):
    rng = np.random.default_rng(0)
    return [(distrain.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)),
             distrain.tensor(rng.integers(0, 5, 4))) for _ in range(count)]


@pytest.mark.parametrize("path", ["numba", "numpy"])
def test_compile_step_with_pooling_and_relu_kernels_trains_like_eager(path, monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_path", path)
    batches = _batches(5)
    eager_model, eager = _trainer(False)
    compiled_model, compiled = _trainer(True)
    for x, y in batches[:3]:
        assert np.array_equal(eager(x, y).numpy(), compiled(x, y).numpy())
    for a, b in zip(eager_model.parameters(), compiled_model.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    called = {getattr(instruction.target, "__name__", None) for instruction in compiled.traced.graph.instructions}
    assert {"max_pool2d_forward", "max_pool2d_backward"} <= called  # one recorded call each, on both paths
    # ReLU's compiled loops are one call; its reference stays NumPy calls (which the GPU fusion pass can fuse)
    assert ({"relu_forward", "relu_backward"} <= called) == (path == "numba")

    compiled.save(tmp_path / "cnn.dtgraph")
    loaded = jit.load(tmp_path / "cnn.dtgraph")
    for x, y in batches[3:]:
        expected = compiled(x, y).numpy()
        assert np.array_equal(loaded(x, y).numpy(), expected)
        assert np.array_equal(eager(x, y).numpy(), expected)
