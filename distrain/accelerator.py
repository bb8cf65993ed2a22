"""distrain.accelerator: torch.accelerator's device-agnostic questions, answered for CUDA.

PyTorch programs now pick their device without naming CUDA::

    device = distrain.accelerator.current_accelerator() if distrain.accelerator.is_available() else "cpu"

distrain has one kind of accelerator, a CUDA GPU through CuPy, so each function here is
that GPU's answer. As in PyTorch, `current_accelerator()` says what this installation
can drive (CuPy is installed: `device(type='cuda', index=0)`, else None) without touching
a GPU, and `check_available=True` also asks whether a GPU is usable now. The functions
that act on a device (current_device_index, set_device_index, synchronize, the memory
counters) raise a DeviceError on a machine without one, as PyTorch's do.
"""
from __future__ import annotations

import importlib.util

from .engine.backend import Device, cuda_device_count, cuda_is_available, cupy_module
from .errors import DeviceError

__all__ = ["current_accelerator", "current_device_index", "device_count", "device_index", "empty_cache",
           "is_available", "memory_allocated", "memory_reserved", "set_device_index", "synchronize"]


def current_accelerator(check_available: bool = False):
    """The accelerator distrain can use: `distrain.device("cuda")` when CuPy is installed, else None.

    With `check_available=True`, None also when no GPU is usable right now.
    """
    if importlib.util.find_spec("cupy") is None:
        return None
    if check_available and not is_available():
        return None
    return Device("cuda")


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return cuda_is_available()


def device_count() -> int:
    """How many CUDA devices are visible (0 without CuPy or a driver)."""
    return cuda_device_count()


def _cupy():
    if not cuda_is_available():
        raise DeviceError("Cannot access accelerator device when none is available: distrain found no usable CUDA "
                          "device (see distrain.accelerator.is_available()); run on the cpu device instead")
    return cupy_module()


def _index(device) -> int:
    """An ordinal from None (the current device), an int, "cuda:1" or a distrain.device."""
    if device is None:
        return current_device_index()
    if isinstance(device, int):
        return device
    return Device(device).index


def current_device_index() -> int:
    """The ordinal of the GPU that new CUDA work goes to in this thread."""
    return _cupy().cuda.runtime.getDevice()


def set_device_index(device) -> None:
    """Make `device` (an ordinal, "cuda:N" or a device) the current GPU of this thread."""
    _cupy().cuda.Device(_index(device)).use()


class device_index:
    """Within `with device_index(i):` GPU i is current; the previous one is restored on exit. None: no change."""

    def __init__(self, device):
        self.index = device
        self.previous = None

    def __enter__(self):
        if self.index is not None:
            self.previous = current_device_index()
            set_device_index(self.index)

    def __exit__(self, *exc_info):
        if self.previous is not None:
            set_device_index(self.previous)
        return False


def synchronize(device=None) -> None:
    """Wait until every kernel queued on `device` (default: the current GPU) has finished."""
    cupy = _cupy()
    with cupy.cuda.Device(_index(device)):
        cupy.cuda.Device().synchronize()


def empty_cache() -> None:
    """Return the GPU memory CuPy's pool holds but no tensor uses (what torch's caching allocator does)."""
    _cupy().get_default_memory_pool().free_all_blocks()


def _pool_bytes(device, which) -> int:
    cupy = _cupy()
    with cupy.cuda.Device(_index(device)):  # CuPy's default pool keeps one sub-pool per device: ask this one
        return getattr(cupy.get_default_memory_pool(), which)()


def memory_allocated(device=None) -> int:
    """Bytes of GPU memory held by live arrays on `device` (default: the current GPU)."""
    return _pool_bytes(device, "used_bytes")


def memory_reserved(device=None) -> int:
    """Bytes CuPy's pool has taken from the driver on `device`, in use or cached for reuse."""
    return _pool_bytes(device, "total_bytes")
