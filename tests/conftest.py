"""Shared test fixtures: the device list every engine test is parametrised over.

Tests run on "cpu" everywhere; on a machine with cupy and a CUDA device they also run on
"cuda:0". The cuda case is marked `cuda` and skipped cleanly where there is no GPU.
"""
import numpy as np
import pytest


def _cuda_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


CUDA_AVAILABLE = _cuda_available()

DEVICES = [
    "cpu",
    pytest.param(
        "cuda:0",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs cupy and a CUDA device")],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """The device a test runs on: "cpu", and "cuda:0" where a GPU is present."""
    return request.param


@pytest.fixture
def rng():
    """A seeded NumPy generator, so every failing case can be reproduced."""
    return np.random.default_rng(1234)
