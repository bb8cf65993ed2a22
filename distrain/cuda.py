"""distrain.cuda: is a GPU usable here, how many, and the legacy cuda tensor types (FloatTensor, ...)."""
from .engine.backend import cuda_device_count as device_count
from .engine.backend import cuda_is_available as is_available
from .engine.legacy_types import legacy_types as _legacy_types

globals().update(_legacy_types("cuda"))  # FloatTensor, DoubleTensor, LongTensor, ...

__all__ = ["device_count", "is_available", "FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor",
           "ShortTensor", "ByteTensor", "CharTensor", "BoolTensor"]
