"""Converters of reductions (sum, mean, max/min, var/std, logsumexp, argmax/argmin, all/any) and softmax.

Reductions over a dynamic axis stay correct for every batch size: var and std divide by a
count computed in the graph from the input's shape, never by the example's size.
"""
from __future__ import annotations

import numpy

from ...ops import activations, reduce
from ...ops.softmax import log_softmax, softmax
from ...tensor import Tensor
from .convert_elementwise import operands, scalar
from .registry import converts


def _axes(dim, ndim):
    """`dim` (None, int, or a sequence) as sorted non-negative axes; None means all."""
    if dim is None or ndim == 0:
        return None
    dims = dim if isinstance(dim, (tuple, list)) else [dim]
    return sorted({d % ndim for d in dims})


def _reduction(onnx_op):
    def converter(builder, out, input, dim=None, keepdim=False, dtype=None):
        (x,) = operands(builder, out._data.dtype, input)
        return builder.reduce(onnx_op, x, _axes(dim, input.ndim), keepdim)

    return converter


converts(reduce.sum)(_reduction("ReduceSum"))
converts(reduce.mean)(_reduction("ReduceMean"))
converts(reduce.prod)(_reduction("ReduceProd"))
converts(reduce.amax)(_reduction("ReduceMax"))
converts(reduce.amin)(_reduction("ReduceMin"))
converts(reduce.logsumexp)(_reduction("ReduceLogSumExp"))


def _max_or_min(reducer, arg_op, elementwise_op):
    def converter(builder, out, input, dim=None, keepdim=False):
        if isinstance(dim, Tensor):  # max(a, b): elementwise
            return builder.node(elementwise_op, operands(builder, out._data.dtype, input, dim))
        x = builder.value(input)
        if dim is None:
            return builder.reduce(reducer, x, None, False)
        axis = dim % max(input.ndim, 1)
        values = builder.reduce(reducer, x, [axis], keepdim)
        indices = builder.node(arg_op, [x], axis=axis, keepdims=int(keepdim))
        return values, indices

    return converter


converts(reduce.max)(_max_or_min("ReduceMax", "ArgMax", "Max"))
converts(reduce.min)(_max_or_min("ReduceMin", "ArgMin", "Min"))


def _arg(onnx_op):
    def converter(builder, out, input, dim=None, keepdim=False):
        x = builder.value(input)
        if dim is None:
            x, dim = builder.node("Reshape", [x, builder.ints([-1])]), 0
        indices = builder.node(onnx_op, [x], axis=dim % max(input.ndim, 1), keepdims=int(keepdim and input.ndim > 0))
        return builder.cast(indices, numpy.int64, out._data.dtype)

    return converter


converts(reduce.argmax)(_arg("ArgMax"))
converts(reduce.argmin)(_arg("ArgMin"))


def _logical(reducer):
    def converter(builder, out, input, dim=None, keepdim=False):
        truth = builder.cast(builder.value(input), input._data.dtype, bool)  # nonzero -> True
        reduced = builder.reduce(reducer, builder.cast(truth, bool, numpy.int32), _axes(dim, input.ndim), keepdim)
        return builder.cast(reduced, numpy.int32, bool)

    return converter


converts(reduce.all)(_logical("ReduceMin"))
converts(reduce.any)(_logical("ReduceMax"))


def element_count(builder, name, axes, ndim, shape, dtype):
    """The number of elements reduced over `axes` (None: all), computed from the runtime shape when axes are
    dynamic, as a scalar of `dtype`."""
    axes = list(range(ndim)) if axes is None else axes
    if not builder.dynamic_shapes:
        return scalar(builder, numpy.prod([shape[a] for a in axes]), dtype)
    sizes = builder.node("Gather", [builder.node("Shape", [name]), builder.ints(axes)], axis=0)
    return builder.cast(builder.reduce("ReduceProd", sizes, None, False), numpy.int64, dtype)


def _variance(root):
    def converter(builder, out, input, dim=None, unbiased=None, keepdim=False, correction=None):
        dtype = out._data.dtype
        correction = (1 if unbiased is None or unbiased else 0) if correction is None else correction
        x = builder.value(input)
        axes = _axes(dim, input.ndim)
        deviation = builder.node("Sub", [x, builder.reduce("ReduceMean", x, axes, True)])
        squares = builder.reduce("ReduceSum", builder.node("Mul", [deviation, deviation]), axes, keepdim)
        count = element_count(builder, x, axes, input.ndim, input.shape, dtype)
        if correction:
            count = builder.node("Sub", [count, scalar(builder, correction, dtype)])
        variance = builder.node("Div", [squares, count])
        return builder.node("Sqrt", [variance]) if root else variance

    return converter


converts(reduce.var)(_variance(root=False))
converts(reduce.std)(_variance(root=True))


def softmax_along(builder, onnx_op, name, axis, ndim):
    """Softmax or LogSoftmax along `axis`. Before opset 13 these operators flatten the axes from `axis` on
    into one, which is the softmax along `axis` only for the last axis: others are moved there and back."""
    if builder.opset >= 13 or axis == ndim - 1:
        return builder.node(onnx_op, [name], axis=axis)
    permutation = list(range(ndim))
    permutation[axis], permutation[-1] = permutation[-1], permutation[axis]
    moved = builder.node("Transpose", [name], perm=permutation)
    return builder.node("Transpose", [builder.node(onnx_op, [moved], axis=ndim - 1)], perm=permutation)


def _softmax(onnx_op, negate=False):
    def converter(builder, out, input, dim=None, _stacklevel=3, dtype=None):
        ndim = input.ndim
        if dim is None:
            dim = 0 if ndim in (0, 1, 3) else 1  # PyTorch's deprecated implicit choice (ops/softmax.py)
        (x,) = operands(builder, out._data.dtype, input)
        if negate:
            x = builder.node("Neg", [x])
        if ndim == 0:  # one element: as a 1-element vector and back
            return builder.squeeze(builder.node(onnx_op, [builder.unsqueeze(x, [0])], axis=0), [0])
        return softmax_along(builder, onnx_op, x, dim % ndim, ndim)

    return converter


converts(softmax)(_softmax("Softmax"))
converts(log_softmax)(_softmax("LogSoftmax"))
converts(activations.softmin)(_softmax("Softmax", negate=True))
