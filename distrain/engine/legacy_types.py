"""PyTorch's legacy tensor types (`torch.FloatTensor`, `torch.cuda.FloatTensor`, ...).

Old code, the lecture's included, writes `dtype = torch.cuda.FloatTensor` and then
`x.type(dtype)` or `torch.cuda.FloatTensor(2, 3)`. A legacy type here is a (device,
dtype) pair that can be called like a factory and passed to `Tensor.type`.
"""
from __future__ import annotations

from ..errors import DTypeError
from . import backend, dtypes


class LegacyTensorType:
    """A device and dtype named the old way; calling it makes an uninitialised tensor of that size."""

    def __init__(self, device, dtype, name):
        self.device = device
        self.dtype = dtypes.public(dtypes.as_dtype(dtype))
        self.name = name

    def __call__(self, *size):
        from .factories import empty, tensor

        if len(size) == 1 and not isinstance(size[0], int):
            return tensor(size[0], dtype=self.dtype, device=self.device)
        return empty(*size, dtype=self.dtype, device=self.device)

    def __instancecheck__(self, instance):
        """`isinstance(x, distrain.FloatTensor)`: x is a float32 cpu tensor, as PyTorch answers."""
        from .tensor import Tensor

        return isinstance(instance, Tensor) and instance.dtype == self.dtype and instance.is_cuda == (self.device.type == "cuda")

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
    """`x.type()` names the legacy type; `x.type(distrain.cuda.FloatTensor)` / `x.type(distrain.float64)` converts.

    The name is distrain's, 'distrain.FloatTensor' or 'distrain.cuda.FloatTensor' (PyTorch's
    is 'torch.FloatTensor'), so that it names the object `distrain.FloatTensor` and
    `x.type(x.type())` converts back. A string naming PyTorch's type ('torch.cuda.FloatTensor')
    is accepted for the conversion too. Code that compares `x.type()` with a 'torch.' literal
    asks about PyTorch's tensors; ask `x.dtype` and `x.is_cuda` (or `isinstance(x,
    distrain.FloatTensor)`) instead.
    """
    from .ops.convert import to

    if dtype is None:
        for name, value in _NAMES.items():
            if dtypes.as_dtype(value) == input.dtype:
                return ("distrain.cuda." if input.is_cuda else "distrain.") + name
        return f"distrain.{input.dtype.name}"
    if isinstance(dtype, LegacyTensorType):
        return to(input, dtype.device, dtype.dtype)
    if isinstance(dtype, str) and dtype.startswith(("distrain.", "torch.")):
        device = "cuda" if dtype.startswith(("distrain.cuda.", "torch.cuda.")) else "cpu"
        name = dtype.rsplit(".", 1)[1]
        if name not in _NAMES:
            raise DTypeError(f"type({dtype!r}): not a tensor type; use one of {', '.join(_NAMES)} "
                             "(e.g. 'distrain.FloatTensor') or a dtype such as distrain.float64")
        return type_(input, legacy_types(device)[name])
    return to(input, dtype)
