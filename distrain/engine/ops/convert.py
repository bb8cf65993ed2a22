"""Moving tensors between devices and dtypes: to, cpu, cuda, float, double, ...

All of these are differentiable: the gradient goes back to the source's device and dtype.
"""
from __future__ import annotations

from ...errors import DTypeError
from .. import backend, dtypes
from .core import Tensor, grad_state, record, wrap


def _parse_to_args(args, kwargs):
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    copy = kwargs.pop("copy", False)
    if kwargs:
        raise DTypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for arg in args:
        if isinstance(arg, Tensor):
            device, dtype = arg.device, arg.dtype
        elif isinstance(arg, (str, backend.Device)) and not (isinstance(arg, str) and arg in dtypes.ALIASES):
            device = arg
        elif isinstance(arg, bool) or arg is None:
            continue
        else:
            dtype = arg
    return (None if device is None else backend.Device(device)), (None if dtype is None else dtypes.as_dtype(dtype)), copy


def to(input, *args, **kwargs):
    """`x.to("cuda:0")`, `x.to(distrain.float64)`, `x.to(device, dtype)`, `x.to(other_tensor)`.

    Returns `x` itself when nothing changes (unless copy=True), as in PyTorch.
    """
    device, dtype, copy = _parse_to_args(args, kwargs)
    data = input._data
    source_device = backend.device_of(data)
    out = data
    if device is not None and device is not source_device:
        out = backend.move_array(out, device)
    if dtype is not None and dtype != out.dtype:
        out = out.astype(dtype)
    if out is data:
        if not copy:
            return input
        out = data.copy()
    result = wrap(out)
    if grad_state.enabled and input._requires_grad and out.dtype.kind == "f":
        record("To", _to_backward, (input,), (result,), args=(source_device, data.dtype))
    return result


def _to_backward(node, grad):
    device, dtype = node.args
    return (to(grad, device, dtype),)


def cpu(input):
    return to(input, backend.CPU)


def cuda(input, device=None):
    return to(input, backend.Device("cuda", device) if isinstance(device, int) else backend.Device(device or "cuda"))


def _cast(dtype):
    def cast(input):
        return to(input, dtype)

    return cast


float_ = _cast(dtypes.float32)
double = _cast(dtypes.float64)
half = _cast(dtypes.float16)
long = _cast(dtypes.int64)
int_ = _cast(dtypes.int32)
bool_ = _cast(dtypes.bool_)


def type_as(input, other):
    return to(input, other.dtype)
