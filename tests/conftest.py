"""Shared test fixtures: the device list every engine test is parametrised over.

Tests run on "cpu" everywhere; on a machine with cupy and a CUDA device they also run on
"cuda:0". The cuda case is marked `cuda` and skipped only where CuPy or a device is absent:
a CuPy that is installed but broken (its import fails, or asking for devices fails for
another reason than "there are none") stops the test session with the reason, instead of
silently skipping every GPU test on a machine that has a GPU.
"""
import importlib
import importlib.util
import os

import numpy as np
import pytest

CUDA_NO_DEVICE = 100  # cudaErrorNoDevice
CUDA_INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver: also what a machine with no NVIDIA driver at all reports


def cuda_status(find_spec=importlib.util.find_spec, import_module=importlib.import_module,
                driver_present=lambda: os.path.exists("/dev/nvidiactl")):
    """(True, "") where CUDA tests can run; (False, why) where CuPy or a device is absent.

    Raises RuntimeError, naming the failure, for a broken CuPy: installed but failing to
    import, or failing to count devices for a reason other than there being none.
    """
    if find_spec("cupy") is None:
        return False, "needs cupy and a CUDA device (CuPy is not installed)"
    try:
        cupy = import_module("cupy")
    except Exception as exc:
        raise RuntimeError(f"CuPy is installed but `import cupy` fails ({type(exc).__name__}: {exc}); fix or "
                           "uninstall it: the CUDA tests would otherwise be skipped on a machine meant to run them")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status == CUDA_NO_DEVICE or (status == CUDA_INSUFFICIENT_DRIVER and not driver_present()):
            return False, f"needs a CUDA device (CuPy sees none: {exc})"
        raise RuntimeError(f"CuPy cannot count CUDA devices ({type(exc).__name__}: {exc}); the CUDA setup is "
                           "broken, so the CUDA tests cannot run (and are not silently skipped)")
    if count == 0:
        return False, "needs a CUDA device (CuPy sees none)"
    return True, ""


CUDA_AVAILABLE, CUDA_SKIP_REASON = cuda_status()

DEVICES = [
    "cpu",
    pytest.param(
        "cuda:0",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not CUDA_AVAILABLE, reason=CUDA_SKIP_REASON or "needs CUDA")],
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
