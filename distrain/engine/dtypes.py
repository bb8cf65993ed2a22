"""The element types of tensors, and PyTorch's rules for choosing them.

distrain's dtypes are NumPy dtype objects (`distrain.float32 is numpy.dtype("float32")`),
which CuPy shares, so no conversion happens between a tensor and its array. What differs
from NumPy are PyTorch's defaults, which these helpers apply: Python floats become float32
(not float64), Python ints int64, and an op mixing integers with floats produces the
default float dtype rather than float64.
"""
from __future__ import annotations

import numpy

from ..errors import DTypeError

float16 = numpy.dtype("float16")
float32 = numpy.dtype("float32")
float64 = numpy.dtype("float64")
int8 = numpy.dtype("int8")
uint8 = numpy.dtype("uint8")
int16 = numpy.dtype("int16")
int32 = numpy.dtype("int32")
int64 = numpy.dtype("int64")
bool_ = numpy.dtype("bool")
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
    dtype = as_dtype(dtype)
    if dtype not in (float16, float32, float64):
        raise DTypeError(f"set_default_dtype needs a floating-point dtype, got {dtype}")
    _default_float = dtype


def as_dtype(dtype):
    """Turn a distrain/NumPy dtype, a type like `float`, or a name like "float32" into a dtype."""
    if isinstance(dtype, numpy.dtype):
        return dtype
    if isinstance(dtype, str) and dtype in ALIASES:
        return ALIASES[dtype]
    if dtype is float:
        return _default_float
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
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
