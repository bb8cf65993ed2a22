"""`set_default_device`: where factories put a tensor when no device is named.

`distrain.set_default_device("cuda")` makes `zeros(3)`, `randn(2, 2)`, `tensor([...])`,
`Tensor(...)` and the parameters of layers built afterwards live on that device, as
`torch.set_default_device` does; an explicit `device=` still wins, and tensors made from
another tensor (`zeros_like`, ops) stay on that tensor's device. `from_numpy` always
shares the NumPy array's memory, so it stays on the cpu. The setting is process-wide.

Example::

    >>> distrain.set_default_device("cuda")   # every new tensor on the GPU
    >>> distrain.set_default_device(None)     # back to the cpu
"""
from __future__ import annotations

from . import backend

current = backend.CPU  # read by the factories on every call that names no device


def get_default_device() -> backend.Device:
    """The device of new tensors that name none (cpu unless changed)."""
    return current


def set_default_device(device) -> None:
    """Make `device` ("cuda", "cuda:1", a distrain.device; None for the cpu) the default for new tensors."""
    global current
    current = backend.CPU if device is None else backend.Device(device)
