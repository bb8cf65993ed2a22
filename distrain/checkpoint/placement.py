"""Where a loaded array goes: `map_location`, read the same way for every format `distrain.load` reads.

A distrain checkpoint, a PyTorch file and a safetensors file all say where each array was saved
("cpu", "cuda:0"); `map_location` moves them, as in `torch.load`.
"""
from __future__ import annotations

from ..engine import backend
from ..errors import DeviceError


class Placement:
    """`map_location`, checked once, applied to every array of one load.

    None puts each array back on the device it was saved from; "cpu" or a `distrain.device`
    puts all of them there; a dict such as {"cuda:0": "cpu"} maps saved devices (others stay);
    a callable `fn(cpu_array, saved_device_name)` returns the array to use, a device, or None
    for the default.
    """

    def __init__(self, name, map_location):
        if isinstance(map_location, dict):
            map_location = {_device_or_name(saved): backend.Device(target) for saved, target in map_location.items()}
        elif not (map_location is None or isinstance(map_location, (str, backend.Device)) or callable(map_location)):
            raise TypeError("map_location must be None, a device such as 'cpu', a dict of devices or a callable, "
                            f"got {type(map_location).__name__}")
        self.name, self.map_location = name, map_location

    def place(self, host, saved, label):
        """`host` (a NumPy array) moved to where map_location sends an array saved on device `saved`."""
        location = self.map_location
        if isinstance(location, dict):  # Device == str is False for a name that is no device, e.g. "mps"
            location = next((target for source, target in location.items() if source == saved), None)
        elif callable(location):
            location = location(host, saved)
            if location is not None and not isinstance(location, (str, backend.Device)):
                return location  # the callable returned the array itself
        target = saved if location is None else location
        try:
            return backend.move_array(host, backend.Device(target))
        except DeviceError as exc:
            raise DeviceError(f"checkpoint {self.name}: array {label} belongs on {target}, which is not available "
                              f"here ({exc}). Pass map_location='cpu' to load it on the CPU.") from None


def _device_or_name(name):
    """A saved-device key of a map_location dict: a Device, or the name itself for a device distrain does not
    have (PyTorch files may say "mps"), so {"mps": "cpu"} still maps it."""
    try:
        return backend.Device(name)
    except DeviceError:
        return name
