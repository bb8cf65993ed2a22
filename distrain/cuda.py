"""distrain.cuda: is a GPU usable here, and how many."""
from .engine.backend import cuda_device_count as device_count
from .engine.backend import cuda_is_available as is_available

__all__ = ["device_count", "is_available"]
