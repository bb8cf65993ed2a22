"""The element types of tensors, and PyTorch's rules for choosing them.

A distrain dtype (`distrain.float32`, `x.dtype`) prints as PyTorch's does
(`distrain.float32`) and is interned, so `x.dtype is distrain.float32` and
`x.dtype == distrain.float32` both hold. Underneath it is a NumPy dtype, held as its
`.dtype` attribute: NumPy and CuPy accept any object with such an attribute wherever they
take a dtype (`numpy.zeros(3, dtype=distrain.float32)`, `array.astype(x.dtype)`), and it
compares and hashes equal to that NumPy dtype, so no array ever converts. Inside the engine
`as_dtype` gives the NumPy dtype itself, the currency of the array code.

What differs from NumPy are PyTorch's defaults, which these helpers apply: Python floats
become the default float dtype (float32 unless `set_default_dtype` changed it, not
float64), Python ints int64, and an op mixing integers with floats produces the default
float dtype rather than float64.
"""
from __future__ import annotations

import numpy

from ..errors import DTypeError


class DType:
    """A tensor element type, like `torch.dtype`: prints as `distrain.float32`, works as a NumPy dtype.

    Example::

        >>> x = distrain.zeros(2)
        >>> x.dtype
        distrain.float32
        >>> x.dtype.is_floating_point, x.dtype.itemsize
        (True, 4)
    """

    __slots__ = ("dtype",)  # the NumPy dtype; NumPy's and CuPy's dtype arguments read this attribute

    def __init__(self, numpy_dtype):
        self.dtype = numpy_dtype

    # -- PyTorch's face ---------------------------------------------------------------
    def __repr__(self):
        return f"distrain.{self.dtype.name}"

    __str__ = __repr__

    @property
    def is_floating_point(self) -> bool:
        return self.dtype.kind == "f"

    @property
    def is_complex(self) -> bool:
        return self.dtype.kind == "c"

    @property
    def is_signed(self) -> bool:
        return self.dtype.kind in "ifc"

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    # -- NumPy's face (engine code reads kind, name, type, ... off any dtype it holds) -----
    def __getattr__(self, name):
        if name == "dtype":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dtype, name)

    def __eq__(self, other):
        if type(other) is DType:
            return self is other
        return self.dtype == other  # NumPy's rule: numpy.float32, numpy.dtype("float32"), "float32"

    def __hash__(self):
        return hash(self.dtype)  # as its NumPy dtype, so either finds the other in a dict

    def __reduce__(self):
        return (public, (self.dtype,))  # unpickles to the interned object

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


DType.__name__ = DType.__qualname__ = "dtype"  # type(distrain.float32) prints as <class 'distrain.dtype'>
DType.__module__ = "distrain"


class _Interned(dict):
    """NumPy dtype -> its one DType, made on first use (Tensor.dtype reads it on every call)."""

    def __missing__(self, numpy_dtype):
        made = self[numpy_dtype] = DType(numpy_dtype)
        return made


_PUBLIC = _Interned()


def public(numpy_dtype) -> DType:
    """The distrain dtype of a NumPy dtype (what `Tensor.dtype` returns)."""
    return _PUBLIC[numpy.dtype(numpy_dtype)]


float16 = public("float16")
float32 = public("float32")
float64 = public("float64")
int8 = public("int8")
uint8 = public("uint8")
int16 = public("int16")
int32 = public("int32")
int64 = public("int64")
bool_ = public("bool")
half = float16
double = float64
short = int16
long = int64

# PyTorch's alternative names, exported at top level as distrain.half, distrain.long, ...
ALIASES = {
    "float16": float16, "half": float16,
    "float32": float32, "float": float32,
    "float64": float64, "double": float64,
    "int8": int8, "uint8": uint8, "int16": int16, "short": int16,
    "int32": int32, "int": int32,
    "int64": int64, "long": int64,
    "bool": bool_,
}

_default_float = float32


def get_default_dtype():
    """The dtype of tensors made from Python floats (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype) -> None:
    """Make `dtype` (float32 or float64) the default for new floating-point tensors."""
    global _default_float
    dtype = public(as_dtype(dtype))
    if dtype not in (float16, float32, float64):
        raise DTypeError(f"set_default_dtype needs a floating-point dtype (distrain.float32 or distrain.float64), "
                         f"got {dtype}")
    _default_float = dtype


def as_dtype(dtype):
    """The NumPy dtype of a distrain/NumPy dtype, a type like `float`, or a name like "float32"."""
    if isinstance(dtype, numpy.dtype):
        return dtype
    if type(dtype) is DType:
        return dtype.dtype
    if isinstance(dtype, str) and dtype.removeprefix("distrain.") in ALIASES:
        return ALIASES[dtype.removeprefix("distrain.")].dtype
    if dtype is float:
        return _default_float.dtype
    if dtype is int:
        return int64.dtype
    if dtype is bool:
        return bool_.dtype
    try:
        return numpy.dtype(dtype)
    except TypeError:
        raise DTypeError(f"{dtype!r} is not a dtype; use e.g. distrain.float32 or distrain.int64") from None


def is_floating(dtype) -> bool:
    return dtype.kind == "f"


def infer_dtype(data):
    """The dtype PyTorch would pick for `data` (nested lists, scalars, or arrays)."""
    if hasattr(data, "dtype"):
        return numpy.dtype(data.dtype)
    probe = numpy.asarray(data)
    if probe.dtype.kind == "f":
        return _default_float
    if probe.dtype.kind in "iu":
        return int64
    if probe.dtype.kind == "b":
        return bool_
    raise DTypeError(f"cannot make a tensor from data of numpy dtype {probe.dtype} ({type(data).__name__})")
