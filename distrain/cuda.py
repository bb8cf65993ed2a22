"""distrain.cuda: is a GPU usable here, how many, and the legacy cuda tensor types (FloatTensor, ...)."""
from .engine.backend import cuda_device_count as device_count
from .engine.backend import cuda_is_available as is_available
from .engine.legacy_types import legacy_types as _legacy_types
from .engine.random import manual_seed_cuda as manual_seed  # seeds every GPU (see its docstring)

manual_seed_all = manual_seed

globals().update(_legacy_types("cuda"))  # FloatTensor, DoubleTensor, LongTensor, ...

__all__ = ["device_count", "is_available", "manual_seed", "manual_seed_all", "FloatTensor", "DoubleTensor",
           "HalfTensor", "LongTensor", "IntTensor", "ShortTensor", "ByteTensor", "CharTensor", "BoolTensor"]
