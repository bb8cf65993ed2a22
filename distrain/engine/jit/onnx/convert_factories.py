"""Converters of the filled-tensor factories whose size comes from a dynamic tensor: zeros, ones, full, their
*_like forms and the Tensor.new_* methods, as ConstantOfShape.

`distrain.zeros(x.size(0), 16)` (an initial state per batch row) must follow the batch size
once exported. A factory call with fixed sizes is not recorded at all: its result is a
constant of the export (recorder.py); it is recorded only when a size is symbolic
(symbolic_sizes.py) or, for the *_like forms, when the tensor it copies the shape of is dynamic.
"""
from __future__ import annotations

import numpy

from ... import factories
from ...ops import TENSOR_METHODS
from .convert_shape import _sizes
from .registry import converts
from .symbolic_sizes import shape_operand


def _filled(builder, out, shape, value):
    fill = builder.onnx.numpy_helper.from_array(numpy.asarray([value], dtype=out._data.dtype), "value")
    return builder.node("ConstantOfShape", [shape], value=fill)


def _sized(value):
    return lambda builder, out, size, **_: _filled(builder, out, shape_operand(builder, _sizes(size)), value)


converts(factories.zeros)(_sized(0))
converts(factories.ones)(_sized(1))
converts(factories.full)(lambda builder, out, size, fill_value, **_: _sized(fill_value)(builder, out, [size]))


def _like(value):
    return lambda builder, out, input, **_: _filled(builder, out, builder.node("Shape", [builder.value(input)]), value)


converts(factories.zeros_like)(_like(0))
converts(factories.ones_like)(_like(1))
converts(factories.full_like)(lambda builder, out, input, fill_value, **_: _like(fill_value)(builder, out, input))
converts(TENSOR_METHODS["new_zeros"], TENSOR_METHODS["new_empty"])(
    lambda builder, out, self, size, **_: _sized(0)(builder, out, size))
converts(TENSOR_METHODS["new_ones"])(lambda builder, out, self, size, **_: _sized(1)(builder, out, size))
converts(TENSOR_METHODS["new_full"])(
    lambda builder, out, self, size, fill_value, **_: _sized(fill_value)(builder, out, [size]))
converts(TENSOR_METHODS["new_tensor"])(lambda builder, out, self, data, **_: builder.constant(out.__array__()))
