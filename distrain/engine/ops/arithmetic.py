"""Arithmetic with broadcasting: add, sub, mul, div, neg, pow, and comparisons.

Each op computes with NumPy broadcasting in forward; its backward sums the gradient back
to each operand's shape (`sum_to_shape`). Python scalars stay "weak" like in PyTorch: a
float32 tensor times 2.5 is float32.
"""
from __future__ import annotations

from ...errors import ArgumentError, DTypeError
from ..backend import array_module
from .core import Tensor, binary_operands, fix_float_dtype, grad_state, record, shape_error, sum_to_shape, wrap


def _shape(x):
    return x._data.shape if isinstance(x, Tensor) else ()


def _needs(a, b):
    return grad_state.enabled and (getattr(a, "_requires_grad", False) or getattr(b, "_requires_grad", False))


def _broadcast_failed(name, a, b):
    return shape_error(name, _shape(a), _shape(b), " for broadcasting (trailing dimensions must be equal or 1)")


def _sum_or_difference(name, sign):
    """add (sign +1) and sub (sign -1): input + sign * alpha * other, one formula for both."""
    node_name = name.capitalize()

    def op(input, other, alpha=1):
        a, b = binary_operands(input, other, name)
        try:
            if alpha == 1:
                out = a + b if sign > 0 else a - b
            else:
                out = a + (sign * alpha) * b
        except ValueError:
            raise _broadcast_failed(name, input, other) from None
        result = wrap(fix_float_dtype(out, a, b))
        if _needs(input, other):
            record(node_name, backward_fn, (input, other), (result,), args=(_shape(input), _shape(other), sign * alpha))
        return result

    def backward_fn(node, grad):
        a_shape, b_shape, scale = node.args
        a_edge, b_edge = node.next_edges
        grad_b = None
        if b_edge is not None:
            grad_b = sum_to_shape(grad if scale == 1 else (-grad if scale == -1 else grad * scale), b_shape)
        return (sum_to_shape(grad, a_shape) if a_edge is not None else None), grad_b

    op.__name__ = name
    op.__doc__ = f"input {'+' if sign > 0 else '-'} alpha * other, with broadcasting."
    return op


add = _sum_or_difference("add", 1)
sub = _sum_or_difference("sub", -1)


def rsub(input, other):
    return sub(other, input)


def _saved_operands(*operands):
    """(tensors to save, args) for a formula that needs its operands: scalars go in args,
    tensors are saved (version-checked) and marked TENSOR in args."""
    saved, args = [], []
    for x in operands:  # plain loops here and below: every mul and pow runs them (half a generator's cost)
        if isinstance(x, Tensor):
            saved.append(x)
            args.append(TENSOR)
        else:
            args.append(x)
    return tuple(saved), tuple(args)


def _operands_back(node, count):
    """The operands of `_saved_operands`, with saved tensors unpacked and checked."""
    saved = iter(node.saved_tensors)
    operands = []
    for x in node.args[:count]:
        operands.append(next(saved) if x is TENSOR else x)
    return operands


TENSOR = object()  # marks an operand that was saved as a tensor


def mul(input, other):
    a, b = binary_operands(input, other, "mul")
    try:
        out = a * b
    except ValueError:
        raise _broadcast_failed("mul", input, other) from None
    result = wrap(fix_float_dtype(out, a, b))
    if _needs(input, other):
        # each operand is needed only for the other's gradient: save no more (as PyTorch does)
        saved, args = _saved_operands(input if getattr(other, "_requires_grad", False) else None,
                                      other if getattr(input, "_requires_grad", False) else None)
        record("Mul", _mul_backward, (input, other), (result,), saved=saved, args=args + (_shape(input), _shape(other)))
    return result


def _mul_backward(node, grad):
    a, b = _operands_back(node, 2)
    a_shape, b_shape = node.args[2:]
    a_edge, b_edge = node.next_edges
    return (sum_to_shape(grad * b, a_shape) if a_edge is not None else None,
            sum_to_shape(grad * a, b_shape) if b_edge is not None else None)


def div(input, other, rounding_mode=None):
    """input / other; rounding_mode "floor" or "trunc" rounds the quotient (no gradient then)."""
    if rounding_mode not in (None, "floor", "trunc"):
        raise ArgumentError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    a, b = binary_operands(input, other, "div")
    try:
        if rounding_mode is None:
            out = a / b
        elif rounding_mode == "floor":
            out = a // b
        else:
            quotient = a / b
            out = array_module(quotient).trunc(quotient)
            if input.dtype.kind in "iu" and getattr(b, "dtype", input.dtype).kind in "iu":
                out = out.astype(input.dtype)
    except ValueError:
        raise _broadcast_failed("div", input, other) from None
    result = wrap(fix_float_dtype(out, a, b))
    if rounding_mode is None and _needs(input, other):
        saved, args = _saved_operands(input, other, result)
        record("Div", _div_backward, (input, other), (result,), saved=saved, args=args)
    return result


def _div_backward(node, grad):
    a, b, result = _operands_back(node, 3)
    a_edge, b_edge = node.next_edges
    grad_a = sum_to_shape(grad / b, _shape(a)) if a_edge is not None else None
    grad_b = None
    if b_edge is not None:
        grad_b = sum_to_shape(-grad * result / b, _shape(b))
    return grad_a, grad_b


def rdiv(input, other):
    return div(other, input)


def floor_divide(input, other):
    """input // other, rounded towards minus infinity (Python's and PyTorch's rule); no gradient."""
    return div(input, other, rounding_mode="floor")


def remainder(input, other):
    """input % other with the sign of `other` (Python's rule): input - floor(input / other) * other."""
    return sub(input, mul(floor_divide(input, other), other))


def neg(input):
    result = wrap(-input._data)
    if grad_state.enabled and input._requires_grad:
        record("Neg", _neg_backward, (input,), (result,))
    return result


def _neg_backward(node, grad):
    return (-grad,)


def pow(input, exponent):
    """input ** exponent, for tensor or scalar base and exponent."""
    a, b = binary_operands(input, exponent, "pow")
    try:
        out = a ** b
    except ValueError:
        raise _broadcast_failed("pow", input, exponent) from None
    result = wrap(fix_float_dtype(out, a, b))
    if _needs(input, exponent):
        saved, args = _saved_operands(input, exponent, result)
        record("Pow", _pow_backward, (input, exponent), (result,), saved=saved, args=args)
    return result


def _pow_backward(node, grad):
    base, exponent, result = _operands_back(node, 3)
    base_edge, exponent_edge = node.next_edges
    grad_base = grad_exponent = None
    if base_edge is not None:
        if not isinstance(exponent, Tensor) and exponent == 2:
            if grad_state.enabled:  # create_graph: recorded
                grad_base = grad * (base * 2.0)
            else:  # the same arithmetic on the arrays (grad has base's dtype and shape): no op overhead
                grad_base = wrap(grad._data * (base._data * 2.0))
        elif not isinstance(exponent, Tensor) and exponent == 0:
            grad_base = grad * 0.0  # d(x**0)/dx = 0, also at x = 0 where x**-1 is infinite
        else:
            grad_base = sum_to_shape(grad * exponent * base ** (exponent - 1), _shape(base))
    if exponent_edge is not None:
        from .elementwise import log, where

        if isinstance(base, Tensor):
            safe = where(base == 0, 1.0, base)  # d(0**e)/de is 0 for e >= 0 (PyTorch's convention)
            grad_exponent = sum_to_shape(grad * result * log(safe), _shape(exponent))
        else:
            import math

            grad_exponent = grad * result * math.log(base) if base != 0 else grad * 0
    return grad_base, grad_exponent


def rpow(input, other):
    return pow(other, input)


def _comparison(name, numpy_op):
    def compare(input, other):
        a, b = binary_operands(input, other, name)
        try:
            return wrap(numpy_op(a, b))
        except ValueError:
            raise _broadcast_failed(name, input, other) from None

    compare.__name__ = name
    compare.__doc__ = f"Elementwise `{name}` with broadcasting; a bool tensor, outside the graph."
    return compare


import operator as _operator  # noqa: E402

eq = _comparison("eq", _operator.eq)
ne = _comparison("ne", _operator.ne)
lt = _comparison("lt", _operator.lt)
le = _comparison("le", _operator.le)
gt = _comparison("gt", _operator.gt)
ge = _comparison("ge", _operator.ge)
logical_and = _comparison("logical_and", _operator.and_)
logical_or = _comparison("logical_or", _operator.or_)
logical_xor = _comparison("logical_xor", _operator.xor)


def _equality_operator(compare):
    """`compare` (eq or ne) as the `==`/`!=` operator: an operand that is no tensor, number or numeric array
    gives NotImplemented, so Python falls back to identity and `x == None` is False, `x != "a"` True, `x in
    [None, t]` works, as in PyTorch (eq(x, None) itself still raises DTypeError)."""

    def operator(input, other):
        try:
            return compare(input, other)
        except DTypeError:
            if isinstance(other, Tensor):
                raise
            return NotImplemented  # only operand() raises DTypeError here: `other` cannot be compared

    operator.__name__ = f"__{compare.__name__}__"
    return operator


eq_operator = _equality_operator(eq)
ne_operator = _equality_operator(ne)
