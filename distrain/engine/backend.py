"""Devices and array modules: where a tensor's numbers live and which library computes on them.

A tensor on "cpu" holds a `numpy.ndarray`; a tensor on "cuda:N" holds a `cupy.ndarray` on
GPU N. Every op asks `array_module(array)` for `xp` (numpy or cupy) and writes its math once
in terms of `xp`, so there is one implementation per op, not one per device.

CuPy is imported lazily, the first time a cuda device is used: `import distrain` never
touches the GPU libraries, and a machine without them runs everything on the CPU.
"""
from __future__ import annotations

import numpy

from ..errors import DeviceError

_GPU_INSTALL_HINT = (
    "CUDA devices need CuPy and an NVIDIA GPU: install the gpu extra with "
    "`pip install 'distrain[gpu]'` (CuPy for CUDA 12), or use device='cpu'."
)

_cupy = None


def cupy_module():
    """Import CuPy on first use, with an install hint instead of a bare ImportError."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as exc:
            raise DeviceError(f"cannot use a cuda device: CuPy is not installed ({exc}). {_GPU_INSTALL_HINT}") from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # cupy raises CUDARuntimeError without a driver
            raise DeviceError(f"cannot use a cuda device: CUDA is not usable here ({exc}). {_GPU_INSTALL_HINT}") from None
        if count == 0:
            raise DeviceError(f"cannot use a cuda device: no CUDA device is visible. {_GPU_INSTALL_HINT}")
        _cupy = cupy
    return _cupy


def cuda_is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        cupy_module()
    except DeviceError:
        return False
    return True


def cuda_device_count() -> int:
    return cupy_module().cuda.runtime.getDeviceCount() if cuda_is_available() else 0


class Device:
    """A place for tensors: `Device("cpu")`, `Device("cuda")`, `Device("cuda:1")`, `Device("cuda", 1)`.

    Instances are interned (one object per distinct device), so comparing devices is an
    identity check on the hot path. Exposed as `distrain.device`, like `torch.device`.
    """

    __slots__ = ("type", "index")
    _interned: dict = {}

    def __new__(cls, spec="cpu", index=None):
        if isinstance(spec, Device):
            return spec
        key = (spec, index)
        found = cls._interned.get(key)
        if found is not None:
            return found
        device_type, device_index = _parse_device(spec, index)
        canonical = cls._interned.get((device_type, device_index))
        if canonical is None:
            canonical = object.__new__(cls)
            canonical.type = device_type
            canonical.index = device_index
            cls._interned[(device_type, device_index)] = canonical
        cls._interned[key] = canonical
        return canonical

    def __repr__(self):
        return f"device(type='{self.type}')" if self.index is None else f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except DeviceError:
                return False
        return self is other

    __hash__ = object.__hash__

    def __reduce__(self):
        return (Device, (str(self),))


def _parse_device(spec, index):
    if isinstance(spec, int) and index is None:
        return "cuda", spec  # torch accepts a bare ordinal as a cuda device
    if not isinstance(spec, str):
        raise DeviceError(f"a device is a string like 'cpu' or 'cuda:0', got {spec!r}")
    text = spec.strip().lower()
    if ":" in text:
        text, _, ordinal = text.partition(":")
        if index is not None or not ordinal.isdigit():
            raise DeviceError(f"cannot parse device {spec!r}; use 'cpu', 'cuda' or 'cuda:N'")
        index = int(ordinal)
    if text == "cpu":
        if index not in (None, 0):
            raise DeviceError(f"device {spec!r}: the cpu device has no ordinal; use 'cpu'")
        return "cpu", None
    if text in ("cuda", "gpu"):
        return "cuda", 0 if index is None else int(index)
    raise DeviceError(f"unknown device {spec!r}; distrain knows 'cpu' and 'cuda[:N]'")


CPU = Device("cpu")


def array_module(array):
    """numpy or cupy, whichever owns `array` (the `xp` every op computes with)."""
    if type(array) is numpy.ndarray:
        return numpy
    recording = getattr(array, "recording_module", None)  # a TracedArray while distrain.jit captures
    if recording is not None:
        return recording
    return _cupy if _cupy is not None else cupy_module()


def is_numpy(xp) -> bool:
    """True when the array module `xp` computes on the host: numpy, or distrain.jit's recording stand-in for it."""
    return xp is numpy or getattr(xp, "wrapped_module", None) is numpy


def device_of(array) -> Device:
    """The device an array lives on."""
    if type(array) is numpy.ndarray or isinstance(array, numpy.ndarray):
        return CPU
    concrete = getattr(array, "concrete", None)  # a TracedArray while distrain.jit captures
    if concrete is not None:
        return device_of(concrete)
    if isinstance(array, numpy.generic):  # a traced reduction's NumPy scalar
        return CPU
    return Device("cuda", array.device.id)


def array_module_for(device: Device):
    return numpy if device is CPU else cupy_module()


def move_array(array, device: Device):
    """Return `array` on `device`, copying only when it is elsewhere."""
    if device is CPU:
        return array if isinstance(array, numpy.ndarray) or device_of(array) is CPU else array.get()
    cupy = cupy_module()
    if device.index >= cupy.cuda.runtime.getDeviceCount():
        raise DeviceError(
            f"device {device} does not exist: this machine has {cupy.cuda.runtime.getDeviceCount()} CUDA device(s)"
        )
    if isinstance(array, cupy.ndarray) and array.device.id == device.index:
        return array
    with cupy.cuda.Device(device.index):
        return cupy.asarray(array)
