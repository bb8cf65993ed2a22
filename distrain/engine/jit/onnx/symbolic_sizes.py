"""Sizes read from a dynamic tensor during export, kept as ONNX computations instead of numbers.

`x.view(x.size(0), -1)` must run on any batch size once exported, but `x.size(0)` is a Python
int during the export's one run. While an export has dynamic axes, `size()` and `shape` of a
dynamic tensor return `SymbolicInt`s: ints with the example's value, which also know how to
compute themselves in the graph (Shape -> Gather, then Mul/Add/Sub/Div for `b * t`, `n // 2`).
The ops that take sizes (view, reshape, expand, the zeros/ones/full factories) build their
shape operand from them (`shape_operand`); any other use sees an ordinary int, and arithmetic
outside + - * // gives a plain int, which the graph then holds as a constant.
"""
from __future__ import annotations

import operator

import numpy


class SymbolicInt(int):
    """An int that also says how to compute itself in the graph: `emit(builder) -> name` of a 1-element int64."""

    def __new__(cls, value, emit, origin=None):
        self = super().__new__(cls, value)
        self._emit = emit
        self.origin = origin  # (ONNX value name, axis) when read straight from a tensor's shape
        return self

    def emit(self, builder):
        key = id(self)
        if key not in builder.symbolic_cache:
            builder.symbolic_cache[key] = (self, self._emit(builder))  # the int kept alive with its name
        return builder.symbolic_cache[key][1]


def size_of(name, axis, value):
    """The size of `axis` of ONNX value `name` (example value `value`)."""
    return SymbolicInt(value, lambda builder: builder.shape_dim(name, axis), origin=(name, axis))


def _emit_operand(builder, value):
    if isinstance(value, SymbolicInt):
        return value.emit(builder)
    return builder.ints([int(value)])


def _arithmetic(python_op, onnx_op, reflected=False):
    def method(self, other):
        if isinstance(other, bool) or not isinstance(other, int):
            return NotImplemented
        left, right = (other, self) if reflected else (self, other)
        result = python_op(int(left), int(right))
        if onnx_op == "Div" and (int(left) < 0 or int(right) < 0):
            return result  # ONNX Div truncates, Python's // floors: equal for sizes, not for negatives
        return SymbolicInt(result, lambda builder: builder.node(
            onnx_op, [_emit_operand(builder, left), _emit_operand(builder, right)]))

    return method


for _name, _python_op, _onnx_op in (("add", operator.add, "Add"), ("sub", operator.sub, "Sub"),
                                    ("mul", operator.mul, "Mul"), ("floordiv", operator.floordiv, "Div")):
    setattr(SymbolicInt, f"__{_name}__", _arithmetic(_python_op, _onnx_op))
    setattr(SymbolicInt, f"__r{_name}__", _arithmetic(_python_op, _onnx_op, reflected=True))


def is_symbolic(sizes):
    return any(isinstance(size, SymbolicInt) for size in sizes)


def shape_operand(builder, sizes, input_name=None):
    """The ONNX shape operand (int64 1-D) for `sizes`, ints and SymbolicInts.

    A size read from the same axis of `input_name` (Reshape's input) becomes 0, Reshape's
    "copy this dimension"; other symbolic sizes are computed in the graph and concatenated.
    """
    sizes = list(sizes)
    if input_name is not None:
        sizes = [0 if isinstance(size, SymbolicInt) and size.origin == (input_name, position) else size
                 for position, size in enumerate(sizes)]
    if not is_symbolic(sizes):
        return builder.constant(numpy.asarray([int(size) for size in sizes], dtype=numpy.int64), "shape")
    return builder.node("Concat", [_emit_operand(builder, size) for size in sizes], axis=0)
