"""Matrix products: matmul (with 1-D operands and batch broadcasting), mm, bmm.

The backward of C = A @ B is dA = dC @ B^T and dB = A^T @ dC, each summed over the batch
dimensions that broadcasting added. Only the gradients that are needed are computed: for
`x @ w` with data `x`, backward does one GEMM, not two.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..backend import array_module
from ..flat import claim_flat_gradient
from .core import Tensor, as_tensor_like, binary_operands, check_same_dtype, grad_state, record, sum_to_shape, wrap


def _check_inner(name, a_shape, b_shape):
    if a_shape[-1] != b_shape[-2 if len(b_shape) > 1 else 0]:
        raise ShapeError(
            f"{name}: shapes {tuple(a_shape)} and {tuple(b_shape)} cannot be multiplied "
            f"({a_shape[-1]} != {b_shape[-2 if len(b_shape) > 1 else 0]}): the last dimension of the first "
            "must equal the second-to-last of the second"
        )


def matmul(input, other):
    """Matrix product with NumPy/PyTorch rules: 1-D operands are vectors, leading dims broadcast.

    Both operands must have the same dtype, as in PyTorch (DTypeError otherwise).
    """
    if not isinstance(other, Tensor):
        other = as_tensor_like(other, input)
    elif not isinstance(input, Tensor):
        input = as_tensor_like(input, other)
    a, b = binary_operands(input, other, "matmul")
    if a.dtype != b.dtype:
        check_same_dtype("matmul", ("input", "other"), (input, other))
    if a.ndim < 2 or b.ndim < 2:
        return _matmul_with_vectors(input, other)
    if a.shape[-1] != b.shape[-2]:
        _check_inner("matmul", a.shape, b.shape)
    return _product(input, other, a, b)


def _product(input, other, a, b):
    """`a @ b`, the arrays of tensors `input` and `other` that the caller has checked, recorded if needed."""
    try:
        out = a @ b
    except ValueError:
        raise ShapeError(
            f"matmul: the batch dimensions of shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast"
        ) from None
    result = wrap(out)
    if grad_state.enabled and (input._requires_grad or other._requires_grad):
        record("Mm", _matmul_backward, (input, other), (result,), saved=(input, other))
    return result


def _matmul_backward(node, grad):
    a, b = node.saved_tensors
    a_edge, b_edge = node.next_edges
    grad_a = grad_b = None
    if grad_state.enabled:  # create_graph: the products are themselves recorded
        if a_edge is not None:
            grad_a = matmul(grad, b.transpose(-1, -2))
        if b_edge is not None:
            grad_b = matmul(a.transpose(-1, -2), grad)
    else:
        # The same two products on the arrays: nothing to record and the operands are the
        # engine's own (checked in forward), so the ops' checks and views are skipped (about
        # 3 us per product, a tenth of a small net's backward).
        if a_edge is not None:
            grad_a = wrap(grad._data @ b._data.swapaxes(-1, -2))
        if b_edge is not None:
            grad_b = wrap(a._data.swapaxes(-1, -2) @ grad._data)
    return (None if grad_a is None else sum_to_shape(grad_a, a._data.shape),
            None if grad_b is None else sum_to_shape(grad_b, b._data.shape))


def _matmul_with_vectors(input, other):
    """Promote 1-D operands to matrices (row for the left, column for the right), then squeeze."""
    if input.ndim == 0 or other.ndim == 0:
        raise ShapeError(f"matmul: both arguments need at least 1 dimension, got shapes {tuple(input.shape)} and "
                         f"{tuple(other.shape)}")
    a_vector = input.ndim == 1
    b_vector = other.ndim == 1
    left = input.unsqueeze(0) if a_vector else input
    right = other.unsqueeze(-1) if b_vector else other
    _check_inner("matmul", input.shape, other.shape)
    out = matmul(left, right)
    if b_vector:
        out = out.squeeze(-1)
    if a_vector:
        out = out.squeeze(-2 if not b_vector else -1) if out.ndim else out
    return out


def mm(input, mat2):
    """Product of two 2-D matrices."""
    a, b = input._data, getattr(mat2, "_data", mat2)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expected two 2-D matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if isinstance(mat2, Tensor) and a.dtype != b.dtype:
        check_same_dtype("mm", ("input", "mat2"), (input, mat2))
    if a.shape[1] != b.shape[0]:
        _check_inner("mm", a.shape, b.shape)
    if not isinstance(mat2, Tensor):
        return matmul(input, mat2)  # which makes a tensor of it
    # matmul's other checks hold already (2-D, one dtype, inner sizes): only the device is left
    a, b = binary_operands(input, mat2, "matmul")
    return _product(input, mat2, a, b)


def bmm(input, mat2):
    """Batched product of (b, n, m) and (b, m, p) tensors."""
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise ShapeError(
            f"bmm: expected (b, n, m) and (b, m, p) tensors with the same b, got shapes "
            f"{tuple(input.shape)} and {tuple(mat2.shape)}"
        )
    _check_inner("bmm", input.shape, mat2.shape)
    check_same_dtype("bmm", ("input", "mat2"), (input, mat2))
    return matmul(input, mat2)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise ShapeError(f"dot: expected two 1-D tensors, got shapes {tuple(input.shape)} and {tuple(other.shape)}")
    check_same_dtype("dot", ("input", "other"), (input, other))
    return matmul(input, other)


def linear(input, weight, bias=None):
    """y = x @ weight^T + bias, as one op (one node, the bias added in place into the GEMM result).

    Shapes: input (*, in_features), weight (out_features, in_features), bias (out_features).
    """
    x, w = input._data, weight._data
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ShapeError(
            f"linear: input of shape {tuple(x.shape)} cannot be multiplied by weight of shape {tuple(w.shape)}: "
            f"the input's last dimension must equal the weight's in_features ({w.shape[1] if w.ndim == 2 else '?'})"
        )
    if type(x) is not type(w):
        binary_operands(input, weight, "linear")  # raises the device error
    check_same_dtype("linear", ("input", "weight", "bias"), (input, weight, bias))
    out = x @ w.T
    if bias is not None:
        b = bias._data
        if b.shape != (w.shape[0],):
            raise ShapeError(f"linear: bias must have shape ({w.shape[0]},) for weight {tuple(w.shape)}, "
                             f"got {tuple(b.shape)}")
        out += b
    result = wrap(out)
    if grad_state.enabled and (input._requires_grad or weight._requires_grad
                               or (bias is not None and bias._requires_grad)):
        record("Linear", _linear_backward, (input, weight, bias), (result,), saved=(input, weight), args=bias)
    return result


def _linear_backward(node, grad):
    x, w = node.saved_tensors
    x_edge, w_edge, b_edge = node.next_edges
    grad_x = grad_w = grad_b = None
    if x_edge is not None:
        grad_x = matmul(grad, w)
    if w_edge is not None or b_edge is not None:
        rows = grad.reshape(-1, grad.shape[-1]) if grad.ndim != 2 else grad
        if w_edge is not None:
            x_rows = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
            grad_w = claim_flat_gradient(w)  # compute straight into a packed weight's gradient slot
            if grad_w is None:
                grad_w = matmul(rows.t(), x_rows)
            else:
                array_module(x._data).matmul(rows._data.T, x_rows._data, out=grad_w._data)
        if b_edge is not None:
            bias = node.args
            grad_b = claim_flat_gradient(bias) if bias is not None else None
            if grad_b is None:
                grad_b = rows.sum(0)
            else:
                rows._data.sum(axis=0, out=grad_b._data)
    return grad_x, grad_w, grad_b
