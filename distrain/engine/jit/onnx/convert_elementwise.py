"""Converters of elementwise ops: arithmetic, comparisons, math functions, activations, casts, in-place forms.

ONNX's elementwise operators want both operands of one type, where distrain promotes
(an int tensor times 0.5 is float): each operand is cast to the type the eager op produced
(`operands`). Activations ONNX has as one operator map to it where the definitions agree;
the others are written with the operators that compute distrain's formula (GELU before opset
20, softplus with its beta and linear tail, SiLU, Mish).
"""
from __future__ import annotations

import math

import numpy

from ...ops import TENSOR_METHODS, activations, arithmetic, convert, elementwise, math_functions, scatter_gather
from ...tensor import Tensor
from .export_errors import OnnxExportError
from .registry import FUNCTIONS, convert_call, converts


def operands(builder, dtype, *values):
    """Each value (tensor or Python number) as an ONNX value of `dtype`."""
    names = []
    for value in values:
        if isinstance(value, Tensor):
            names.append(builder.cast(builder.value(value), value._data.dtype, dtype))
        else:
            names.append(builder.constant(numpy.asarray(value, dtype=dtype)))
    return names


def scalar(builder, value, dtype):
    return builder.constant(numpy.asarray(value, dtype=dtype))


# -- arithmetic ----------------------------------------------------------------------------
def _binary(onnx_op, swap=False):
    """The op's first two arguments (input/self, then other/exponent/mat2), in the type of the result."""

    def converter(builder, out, **named):
        left, right = list(named.values())[:2]
        if swap:
            left, right = right, left
        return builder.node(onnx_op, operands(builder, out._data.dtype, left, right))

    return converter


converts(arithmetic.mul, TENSOR_METHODS["__rmul__"])(_binary("Mul"))
converts(arithmetic.pow)(_binary("Pow"))
converts(arithmetic.rsub)(_binary("Sub", swap=True))
converts(arithmetic.rdiv)(_binary("Div", swap=True))
converts(arithmetic.rpow)(_binary("Pow", swap=True))
converts(elementwise.maximum)(_binary("Max"))
converts(elementwise.minimum)(_binary("Min"))


def _add_like(onnx_op):
    def converter(builder, out, input, other, alpha=1):
        dtype = out._data.dtype
        left, right = operands(builder, dtype, input, other)
        if alpha != 1:
            right = builder.node("Mul", [right, scalar(builder, alpha, dtype)])
        return builder.node(onnx_op, [left, right])

    return converter


converts(arithmetic.add)(_add_like("Add"))
converts(arithmetic.sub)(_add_like("Sub"))


@converts(arithmetic.div)
def div(builder, out, input, other, rounding_mode=None):
    dtype = out._data.dtype
    if rounding_mode is not None and dtype.kind != "f":
        raise OnnxExportError(f"{builder.doing}: integer division with rounding_mode={rounding_mode!r} has no exact "
                              f"ONNX form here; divide float tensors and round with distrain.floor")
    quotient = builder.node("Div", operands(builder, dtype, input, other))
    if rounding_mode == "floor":
        return builder.node("Floor", [quotient])
    if rounding_mode == "trunc":  # trunc(q) = sign(q) * floor(|q|)
        return builder.node("Mul", [builder.node("Sign", [quotient]),
                                    builder.node("Floor", [builder.node("Abs", [quotient])])])
    return quotient


# -- comparisons and logic ---------------------------------------------------------------
def _compare(onnx_op, negate=False):
    def converter(builder, out, input, other):
        if not isinstance(out, Tensor):  # x == None and the like: a Python bool, nothing to record
            return None
        dtype = numpy.result_type(*[v._data.dtype if isinstance(v, Tensor) else v for v in (input, other)])
        result = builder.node(onnx_op, operands(builder, dtype, input, other))
        return builder.node("Not", [result]) if negate else result

    return converter


converts(arithmetic.eq, arithmetic.eq_operator)(_compare("Equal"))
converts(arithmetic.ne, arithmetic.ne_operator)(_compare("Equal", negate=True))
converts(arithmetic.lt)(_compare("Less"))
converts(arithmetic.gt)(_compare("Greater"))
converts(arithmetic.le)(_compare("LessOrEqual"))
converts(arithmetic.ge)(_compare("GreaterOrEqual"))
for _function, _onnx_op in ((arithmetic.logical_and, "And"), (arithmetic.logical_or, "Or"),
                            (arithmetic.logical_xor, "Xor")):
    converts(_function)(lambda builder, out, input, other, _onnx_op=_onnx_op: builder.node(
        _onnx_op, operands(builder, bool, input, other)))
converts(TENSOR_METHODS["logical_not"])(lambda builder, out, input: builder.node("Not", operands(builder, bool, input)))


# -- one-operand math --------------------------------------------------------------------
def _unary(*onnx_ops):
    def converter(builder, out, **named):
        (name,) = operands(builder, out._data.dtype, next(iter(named.values())))  # input, or a method's self
        for onnx_op in onnx_ops:
            name = builder.node(onnx_op, [name])
        return name

    return converter


for _function, _onnx_ops in (
        (arithmetic.neg, ("Neg",)), (elementwise.exp, ("Exp",)), (elementwise.log, ("Log",)),
        (elementwise.sqrt, ("Sqrt",)), (elementwise.abs, ("Abs",)), (elementwise.sin, ("Sin",)),
        (elementwise.cos, ("Cos",)), (elementwise.tanh, ("Tanh",)), (elementwise.sigmoid, ("Sigmoid",)),
        (elementwise.relu, ("Relu",)), (elementwise.erf, ("Erf",)), (elementwise.sign, ("Sign",)),
        (math_functions.reciprocal, ("Reciprocal",)), (math_functions.rsqrt, ("Sqrt", "Reciprocal")),
        (math_functions.tan, ("Tan",)), (math_functions.asin, ("Asin",)), (math_functions.acos, ("Acos",)),
        (math_functions.atan, ("Atan",)), (math_functions.sinh, ("Sinh",)), (math_functions.cosh, ("Cosh",)),
        (math_functions.asinh, ("Asinh",)), (math_functions.acosh, ("Acosh",)), (math_functions.atanh, ("Atanh",)),
        (activations.softsign, ("Softsign",)), (TENSOR_METHODS["__pos__"], ())):
    converts(_function)(_unary(*_onnx_ops))


def _rounding(onnx_op):
    def converter(builder, out, input, decimals=0):
        if decimals:
            raise OnnxExportError(f"{builder.doing}: decimals={decimals} has no ONNX form here; scale, round, unscale")
        return builder.node(onnx_op, [builder.value(input)])

    return converter


converts(math_functions.floor)(_rounding("Floor"))
converts(math_functions.ceil)(_rounding("Ceil"))
converts(math_functions.round)(_rounding("Round"))


@converts(TENSOR_METHODS["square"])
def square(builder, out, input):
    name = builder.value(input)
    return builder.node("Mul", [name, name])


@converts(elementwise.clamp)
def clamp(builder, out, input, min=None, max=None):
    dtype = out._data.dtype
    low, high = min, max
    (name,) = operands(builder, dtype, input)
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        if low is not None:
            name = builder.node("Max", [name] + operands(builder, dtype, low))
        if high is not None:
            name = builder.node("Min", [name] + operands(builder, dtype, high))
        return name
    return builder.node("Clip", [name, None if low is None else scalar(builder, low, dtype),
                                 None if high is None else scalar(builder, high, dtype)])


converts(math_functions.clamp_min)(lambda builder, out, input, min: clamp(builder, out, input, min=min))
converts(math_functions.clamp_max)(lambda builder, out, input, max: clamp(builder, out, input, max=max))
converts(activations.hardtanh)(lambda builder, out, input, min_val=-1.0, max_val=1.0, inplace=False: clamp(
    builder, out, input, min_val, max_val))
converts(activations.relu6)(lambda builder, out, input, inplace=False: clamp(builder, out, input, 0.0, 6.0))


# -- activations -------------------------------------------------------------------------
@converts(elementwise.gelu)
def gelu(builder, out, input, approximate="none"):
    x = builder.value(input)
    dtype = out._data.dtype
    if builder.opset >= 20:
        return builder.node("Gelu", [x], approximate=approximate)
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = builder.node("Mul", [builder.node("Mul", [x, x]), x])
        inner = builder.node("Add", [x, builder.node("Mul", [cube, scalar(builder, 0.044715, dtype)])])
        core = builder.node("Tanh", [builder.node("Mul", [inner, scalar(builder, math.sqrt(2 / math.pi), dtype)])])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        core = builder.node("Erf", [builder.node("Mul", [x, scalar(builder, 1 / math.sqrt(2), dtype)])])
    half_x = builder.node("Mul", [x, scalar(builder, 0.5, dtype)])
    return builder.node("Mul", [half_x, builder.node("Add", [core, scalar(builder, 1.0, dtype)])])


@converts(elementwise.leaky_relu, activations.leaky_relu)
def leaky_relu(builder, out, input, negative_slope=0.01, **_):
    return builder.node("LeakyRelu", [builder.value(input)], alpha=float(negative_slope))


@converts(activations.elu)
def elu(builder, out, input, alpha=1.0, **_):
    return builder.node("Elu", [builder.value(input)], alpha=float(alpha))


@converts(activations.selu)
def selu(builder, out, input, **_):
    return builder.node("Selu", [builder.value(input)], alpha=activations.SELU_ALPHA, gamma=activations.SELU_SCALE)


@converts(activations.celu)
def celu(builder, out, input, alpha=1.0, **_):
    return builder.node("Celu", [builder.value(input)], alpha=float(alpha))


def _softplus(builder, x, dtype, beta, threshold):
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold (distrain's definition)."""
    scaled = x if beta == 1 else builder.node("Mul", [x, scalar(builder, beta, dtype)])
    soft = builder.node("Softplus", [scaled])
    if beta != 1:
        soft = builder.node("Div", [soft, scalar(builder, beta, dtype)])
    if math.isinf(threshold):
        return soft
    linear = builder.node("Greater", [scaled, scalar(builder, threshold, dtype)])
    return builder.node("Where", [linear, x, soft])


@converts(activations.softplus)
def softplus(builder, out, input, beta=1.0, threshold=20.0):
    return _softplus(builder, builder.value(input), out._data.dtype, beta, threshold)


@converts(activations.logsigmoid)
def logsigmoid(builder, out, input):
    negated = builder.node("Neg", [builder.value(input)])
    return builder.node("Neg", [_softplus(builder, negated, out._data.dtype, 1.0, math.inf)])


@converts(activations.silu)
def silu(builder, out, input, **_):
    x = builder.value(input)
    return builder.node("Mul", [x, builder.node("Sigmoid", [x])])


@converts(activations.mish)
def mish(builder, out, input, **_):
    x = builder.value(input)
    return builder.node("Mul", [x, builder.node("Tanh", [_softplus(builder, x, out._data.dtype, 1.0, 20.0)])])


@converts(activations.tanhshrink)
def tanhshrink(builder, out, input):
    x = builder.value(input)
    return builder.node("Sub", [x, builder.node("Tanh", [x])])


@converts(activations.hardsigmoid)
def hardsigmoid(builder, out, input, **_):
    return builder.node("HardSigmoid", [builder.value(input)], alpha=1 / 6, beta=0.5)


@converts(activations.hardswish)
def hardswish(builder, out, input, **_):
    x = builder.value(input)
    if builder.opset >= 14:
        return builder.node("HardSwish", [x])
    return builder.node("Mul", [x, builder.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


@converts(activations.prelu)
def prelu(builder, out, input, weight):
    slope = builder.value(weight)
    if input.ndim > 2 and weight.numel() > 1:  # one slope per channel (dim 1): broadcast over the rest
        slope = builder.node("Reshape", [slope, builder.ints([-1] + [1] * (input.ndim - 2))])
    return builder.node("PRelu", [builder.value(input), slope])


@converts(activations.threshold)
def threshold(builder, out, input, threshold, value, **_):
    dtype = out._data.dtype
    x = builder.value(input)
    keep = builder.node("Greater", [x, scalar(builder, threshold, dtype)])
    return builder.node("Where", [keep, x, scalar(builder, value, dtype)])


# -- selection and casts -----------------------------------------------------------------
@converts(elementwise.where)
def where(builder, out, condition, input=None, other=None):
    if input is None:
        raise OnnxExportError(f"{builder.doing}: where(condition) gives data-dependent shapes (nonzero); ONNX "
                              f"export needs where(condition, input, other)")
    (mask,) = operands(builder, bool, condition)
    return builder.node("Where", [mask] + operands(builder, out._data.dtype, input, other))


converts(TENSOR_METHODS["where"])(lambda builder, out, self, condition, other: where(builder, out, condition, self,
                                                                                    other))


@converts(scatter_gather.masked_fill)
def masked_fill(builder, out, input, mask, value):
    (condition,) = operands(builder, bool, mask)
    return builder.node("Where", [condition] + operands(builder, out._data.dtype, value, input))


@converts(convert.to, convert.type_as, convert.cpu, convert.cuda, *(TENSOR_METHODS[name] for name in (
    "float", "double", "half", "long", "int", "bool")))
def cast(builder, out, input, **_):
    name = builder.value(input)
    return builder.cast(name, input._data.dtype, out._data.dtype)


# -- in-place forms: the out-of-place converter, then the target is rebound to the result --
def _in_place(out_of_place):
    def converter(builder, out, self, args=None, kwargs=None, **named):
        if self._base is not None:
            raise OnnxExportError(f"{builder.doing}: an in-place op on a view changes the tensor it views too, which "
                                  f"an ONNX graph cannot express; use the out-of-place form (y = x.op(...))")
        if args is not None:  # in_place_form's (self, *args, **kwargs)
            return convert_call(builder, out, out_of_place, self, *args, **(kwargs or {}))
        return FUNCTIONS[out_of_place](builder, out, input=self, **named)

    return converter


for _name in [name for name in TENSOR_METHODS if name.endswith("_") and not name.startswith("__")]:
    _out_of_place = TENSOR_METHODS.get(_name[:-1])
    if _out_of_place in FUNCTIONS:
        converts(TENSOR_METHODS[_name])(_in_place(_out_of_place))
for _name, _out_of_place in (("__iadd__", arithmetic.add), ("__isub__", arithmetic.sub), ("__imul__", arithmetic.mul),
                             ("__itruediv__", arithmetic.div), ("__ipow__", arithmetic.pow)):
    converts(TENSOR_METHODS[_name])(_in_place(_out_of_place))
for _function in (activations.leaky_relu, activations.hardtanh, activations.relu6, activations.elu, activations.selu,
                  activations.celu, activations.silu, activations.mish, activations.hardsigmoid,
                  activations.hardswish, activations.threshold):
    _converter = FUNCTIONS[_function]

    def _maybe_in_place(builder, out, input, inplace=False, _converter=_converter, **named):
        if inplace and input._base is not None:
            raise OnnxExportError(f"{builder.doing}: inplace=True on a view changes the tensor it views too, which "
                                  f"an ONNX graph cannot express; use inplace=False")
        return _converter(builder, out, input, **named)

    converts(_function)(_maybe_in_place)
