"""What every op shares: unwrapping operands, device checks, dtype rules, broadcast reduction.

Ops are written as forward + backward pairs on `xp` arrays for the forward and on
Tensors for the backward (so that backward itself can be recorded when
`create_graph=True`). These helpers keep the per-op Python overhead to a few attribute
reads: the engine must stay within a few microseconds of NumPy per op.
"""
from __future__ import annotations

import operator as _operator

import numpy

from ...errors import DeviceError, DTypeError, ShapeError
from .. import backend, dtypes
from ..autograd import grad_mode
from ..autograd.graph import record
from ..tensor import Tensor, _make

grad_state = grad_mode.state
ndarray = numpy.ndarray
FLOAT64 = numpy.dtype("float64")
SCALAR_TYPES = (int, float, bool)

__all__ = ["Tensor", "_make", "record", "grad_state", "wrap", "operand", "binary_operands", "check_same_dtype", "sum_to_shape",
           "shape_error", "normalize_dim", "normalize_dims", "as_tensor_like", "FLOAT64", "ndarray"]


def wrap(array):
    """A result array as a Tensor (NumPy returns scalars from 0-d ops; keep them arrays)."""
    if type(array) is not ndarray:
        if isinstance(array, numpy.generic):
            array = numpy.asarray(array)
        elif isinstance(getattr(array, "concrete", None), numpy.generic):  # a traced reduction (distrain.jit)
            array = array.recording_module.asarray(array)
    return _make(array)


def operand(value, like, op_name="op"):
    """The array (or Python scalar) to compute with for `value`, an operand beside tensor `like`."""
    if isinstance(value, Tensor):
        return value._data
    if isinstance(value, numpy.generic):
        return value.item()  # NumPy scalars are as weak as Python numbers (np.sqrt(d) keeps float32)
    if isinstance(value, SCALAR_TYPES):
        return value
    try:
        array = backend.array_module(like._data).asarray(value)
    except (TypeError, ValueError) as exc:
        array, reason = None, f" ({exc})"
    else:
        reason = f" (as an array: {array.dtype})"
    if array is None or array.dtype.kind not in "biufc":
        raise DTypeError(f"{op_name}: cannot combine a {like._data.dtype} tensor with {type(value).__name__} "
                         f"{value!r:.40}{reason}; operands are tensors, numbers or numeric arrays")
    return array


def _same_category(a, b):
    return (a.kind == "f") == (b.kind == "f") and (a.kind == "b") == (b.kind == "b")


def weak_zero_dim(scalar, other):
    """PyTorch's promotion: a 0-d operand does not widen a dimensioned one of its category
    (float32 tensor * float64 0-d tensor is float32); from a higher category it keeps its
    own dtype (int tensor * float64 0-d tensor is float64), as NumPy does too."""
    if scalar.dtype != other.dtype and _same_category(scalar.dtype, other.dtype):
        return scalar.astype(other.dtype)
    return scalar


def binary_operands(a, b, op_name):
    """Arrays for a binary op with at least one Tensor; raises on mixed devices."""
    if isinstance(a, Tensor):
        a_data = a._data
        if isinstance(b, Tensor):
            b_data = b._data
            if (type(a_data) is not ndarray or type(b_data) is not ndarray) and \
                    backend.device_of(a_data) != backend.device_of(b_data):
                raise DeviceError(
                    f"{op_name}: expected both tensors on the same device, got {a.device} and {b.device}; "
                    "move one with .to(device)"
                )
            if a_data.ndim == 0 and b_data.ndim:
                return weak_zero_dim(a_data, b_data), b_data
            if b_data.ndim == 0 and a_data.ndim:
                return a_data, weak_zero_dim(b_data, a_data)
            return a_data, b_data
        return a_data, operand(b, a, op_name)
    return operand(a, b, op_name), b._data


def fix_float_dtype(out, a_data, b_data):
    """PyTorch's promotion: ints (or Python floats) mixed with ints give float32, not float64."""
    if out.dtype is FLOAT64 and getattr(a_data, "dtype", None) is not FLOAT64 and getattr(b_data, "dtype", None) is not FLOAT64:
        return out.astype(dtypes.get_default_dtype())
    return out


def check_same_dtype(op_name, names, tensors):
    """PyTorch's rule for matrix products, linear and convolution: no implicit promotion.

    NumPy would silently compute float32 weights times a float64 (or int64) input in
    float64, doubling memory and hiding a data pipeline bug; PyTorch refuses ("expected
    both to have the same dtype"), and so does distrain. `tensors` may hold None (an
    absent bias). Elementwise ops keep PyTorch's type promotion and do not call this.
    """
    first = tensors[0]._data.dtype
    for tensor in tensors[1:]:
        if tensor is not None and tensor._data.dtype != first:
            break
    else:
        return
    present = [(name, tensor._data) for name, tensor in zip(names, tensors) if tensor is not None]
    raise DTypeError(
        f"{op_name}: expected {', '.join(name for name, _ in present)} to have the same dtype, but got "
        + ", ".join(f"{name} {data.dtype} of shape {tuple(data.shape)}" for name, data in present)
        + f". PyTorch refuses this too: convert one first, e.g. {names[0]}.to(distrain.{present[1][1].dtype}) "
          "(a float32 model wants float32 input: x.float())"
    )


def shape_error(op_name, a_shape, b_shape, hint=""):
    return ShapeError(f"{op_name}: shapes {tuple(a_shape)} and {tuple(b_shape)} are incompatible{hint}")


def sum_to_shape(grad, shape):
    """Undo broadcasting in backward: sum `grad` over the axes that broadcasting stretched."""
    grad_shape = grad._data.shape
    if grad_shape == shape:
        return grad
    leading = len(grad_shape) - len(shape)
    axes = tuple(range(leading)) + tuple(
        i + leading for i, extent in enumerate(shape) if extent == 1 and grad_shape[i + leading] != 1
    )
    if axes:
        grad = grad.sum(dim=axes, keepdim=True)
    if leading:
        grad = grad.reshape(shape)
    return grad


def normalize_dim(dim, ndim, op_name="op"):
    try:
        if isinstance(dim, bool):
            raise TypeError
        dim = _operator.index(dim)  # an int, a NumPy integer or a one-element integer tensor, as PyTorch takes
    except TypeError:
        raise DTypeError(f"{op_name}: dim must be an int, got {type(dim).__name__} {dim!r:.40}") from None
    if dim < -max(ndim, 1) or dim >= max(ndim, 1):
        raise ShapeError(f"{op_name}: dim {dim} is out of range for a tensor with {ndim} dimension(s)")
    return dim % ndim if ndim else 0


def normalize_dims(dim, ndim, op_name="op"):
    """`dim` (None, int or sequence) as a sorted tuple of non-negative axes, or None for all."""
    if dim is None:
        return None
    if ndim == 0:  # PyTorch lets a 0-d tensor be reduced over dim 0 or -1: the whole (single) element
        for d in (dim if isinstance(dim, (tuple, list)) else (dim,)):
            normalize_dim(d, 0, op_name)
        return None
    if isinstance(dim, (tuple, list)):
        axes = tuple(sorted(normalize_dim(d, ndim, op_name) for d in dim))
        if len(set(axes)) != len(axes):
            raise ShapeError(f"{op_name}: dim {tuple(dim)} names a dimension more than once")
        return axes
    return (normalize_dim(dim, ndim, op_name),)


def as_tensor_like(value, like):
    """`value` as a Tensor on `like`'s device (for constants that enter formulas)."""
    if isinstance(value, Tensor):
        return value
    return _make(backend.array_module(like._data).asarray(value))


def reference_grads(reference, inputs, grad):
    """Input gradients of a fused op when backward itself must be differentiable (create_graph).

    Fused ops (batch_norm, layer_norm, ...) compute their backward on arrays for speed; a
    graph of that arithmetic would not know how it depends on the inputs. So under
    create_graph the op is recomputed from differentiable primitives (`reference(*inputs)`)
    and differentiated with autograd.grad(create_graph=True): exact higher-order
    gradients from one definition, paid for only by whoever asks for them.
    """
    from ..autograd.api import grad as autograd_grad

    wanted = [tensor for tensor in inputs if tensor is not None and tensor._requires_grad]
    output = reference(*inputs)
    found = autograd_grad(output, wanted, grad, create_graph=True, allow_unused=True) if wanted else ()
    found = iter(found)
    return tuple(next(found) if tensor is not None and tensor._requires_grad else None for tensor in inputs)
