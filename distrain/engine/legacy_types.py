"""PyTorch's legacy tensor types (`torch.FloatTensor`, `torch.cuda.FloatTensor`, ...).

Old code, the lecture's included, writes `dtype = torch.cuda.FloatTensor` and then
`x.type(dtype)` or `torch.cuda.FloatTensor(2, 3)`. A legacy type here is a (device,
dtype) pair that can be called like a factory and passed to `Tensor.type`.
"""
from __future__ import annotations

from . import backend, dtypes


class LegacyTensorType:
    """A device and dtype named the old way; calling it makes an uninitialised tensor of that size."""

    def __init__(self, device, dtype, name):
        self.device = device
        self.dtype = dtypes.as_dtype(dtype)
        self.name = name

    def __call__(self, *size):
        from .factories import empty, tensor

        if len(size) == 1 and not isinstance(size[0], int):
            return tensor(size[0], dtype=self.dtype, device=self.device)
        return empty(*size, dtype=self.dtype, device=self.device)

    def __repr__(self):
        return f"<class '{self.name}'>"


_NAMES = {"FloatTensor": "float32", "DoubleTensor": "float64", "HalfTensor": "float16", "LongTensor": "int64",
          "IntTensor": "int32", "ShortTensor": "int16", "ByteTensor": "uint8", "CharTensor": "int8",
          "BoolTensor": "bool"}


def legacy_types(device):
    """{name: LegacyTensorType} for one device ("cpu" gives distrain.FloatTensor, "cuda" distrain.cuda.FloatTensor)."""
    prefix = "distrain." if device == "cpu" else "distrain.cuda."
    return {name: LegacyTensorType(backend.Device(device), dtype, prefix + name) for name, dtype in _NAMES.items()}


def type_(input, dtype=None, non_blocking=False):
    """`x.type()` names the legacy type; `x.type(distrain.cuda.FloatTensor)` / `x.type(distrain.float64)` converts."""
    from .ops.convert import to

    if dtype is None:
        for name, value in _NAMES.items():
            if dtypes.as_dtype(value) == input.dtype:
                return ("distrain.cuda." if input.is_cuda else "distrain.") + name
        return f"distrain.{input.dtype}"
    if isinstance(dtype, LegacyTensorType):
        return to(input, dtype.device, dtype.dtype)
    if isinstance(dtype, str) and dtype.startswith("distrain."):
        device = "cuda" if dtype.startswith("distrain.cuda.") else "cpu"
        return type_(input, legacy_types(device)[dtype.rsplit(".", 1)[1]])
    return to(input, dtype)
