"""Devices, the host-memory setting, and the erf fallback used by the exact GELU."""
import math
import subprocess
import sys

import numpy as np
import pytest

import distrain
from distrain.engine import backend
from distrain.engine.ops import elementwise


@pytest.mark.parametrize("spec, expected", [("cpu", "cpu"), ("CPU", "cpu"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1"),
                                            ("gpu:2", "cuda:2")])
def test_device_parsing_and_interning(spec, expected):
    device = distrain.device(spec)
    assert str(device) == expected
    assert device is distrain.device(expected)  # interned: identity comparisons on the hot path
    assert device == expected


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cpu:3", 3.5])
def test_bad_device_names_raise_a_device_error(spec):
    with pytest.raises(distrain.DeviceError, match="device"):
        distrain.device(spec)


def _run(code, **env):
    import os

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_host_memory_cache_is_set_on_import_and_can_be_switched_off():
    code = "import distrain.engine.host_memory as h; print(h._configured)"
    assert _run(code) == "True"
    assert _run(code, DISTRAIN_HOST_MEMORY_CACHE="0") == "False"


def test_erf_fallback_without_scipy_is_exact(monkeypatch):
    x = np.linspace(-4, 4, 41)
    expected = np.array([math.erf(v) for v in x])
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # `from scipy.special import erf` now fails
    got = elementwise._erf_array(np, x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    got32 = elementwise._erf_array(np, x.astype(np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected.astype(np.float32), rtol=1e-6)


def test_array_module_follows_the_array():
    assert backend.array_module(np.zeros(2)) is np
    assert distrain.zeros(2).device == "cpu"
