"""Functions that make tensors: tensor, as_tensor, from_numpy, zeros, ones, randn, arange, ...

Each takes PyTorch's keywords (dtype, device, requires_grad) and PyTorch's defaults: float32
for floating-point values, int64 for integers.
"""
from __future__ import annotations

import numpy

import math

from ..errors import ArgumentError, DTypeError, ShapeError
from . import backend, dtypes
from . import default_device
from .capture_state import active as _capturing
from .random import default_generator
from .sizes import allocating, checked_shape, integers
from .tensor import Tensor, _make


def _finish(array, device, requires_grad, fresh=True):
    """Wrap `array` (moved to `device` unless that is None) as a tensor, a leaf if asked.

    `fresh`: the factory made a new array (not one shared with the caller). While distrain.jit
    captures, such an array is recorded as made anew on every replay, not taken from outside.
    """
    array = array if device is None else backend.move_array(array, device)
    if fresh:
        recorder = _capturing()
        if recorder is not None and not hasattr(array, "concrete"):
            array = recorder.created(array)
    tensor = _make(array)
    if requires_grad:
        tensor.requires_grad_(True)
    return tensor


def _device(device):
    return default_device.current if device is None else backend.Device(device)


def _float_dtype(dtype):
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (nested lists, scalars, arrays or tensors)."""
    if isinstance(data, Tensor):
        source = data._data
        dtype = source.dtype if dtype is None else dtypes.as_dtype(dtype)
        target = data.device if device is None else _device(device)
        return _finish(backend.move_array(source, target).astype(dtype, copy=True), None, requires_grad)
    if isinstance(data, (list, tuple)) and any(isinstance(item, Tensor) for item in _flatten_items(data)):
        data = _nested_to_arrays(data)
    dtype = None if dtype is None else dtypes.as_dtype(dtype)
    if hasattr(data, "concrete"):  # a NumPy input traced by distrain.jit: a recorded copy
        return _finish(data.astype(data.dtype if dtype is None else dtype, copy=True), _device(device), requires_grad)
    if hasattr(data, "__cuda_array_interface__"):
        return _finish(backend.cupy_module().array(data, dtype=dtype, copy=True), None, requires_grad)
    try:
        array = numpy.array(data, dtype=dtypes.infer_dtype(data) if dtype is None else dtype, copy=True)
    except ValueError as exc:  # ragged nested lists, or strings that are not numbers
        raise ShapeError(f"tensor: cannot make a tensor of this {type(data).__name__}: {exc}") from None
    except DTypeError:
        raise
    except TypeError as exc:
        raise DTypeError(f"tensor: cannot make a tensor of this {type(data).__name__}: {exc}") from None
    if array.dtype.kind not in "biufc":
        raise DTypeError(f"tensor: data of type {array.dtype} is not numbers; tensors hold bool, integers, "
                         "floating-point or complex values")
    return _finish(array, _device(device), requires_grad)


def _flatten_items(data):
    for item in data:
        if isinstance(item, (list, tuple)):
            yield from _flatten_items(item)
        else:
            yield item


def _nested_to_arrays(data):
    if isinstance(data, Tensor):
        return data.__array__()
    if isinstance(data, (list, tuple)):
        return [_nested_to_arrays(item) for item in data]
    return data


def as_tensor(data, dtype=None, device=None):
    """Like `tensor`, but shares memory with `data` when no conversion is needed."""
    if isinstance(data, Tensor):
        result = data
        if dtype is not None and data.dtype != dtypes.as_dtype(dtype):
            result = result.to(dtype)
        if device is not None and result.device is not _device(device):
            result = result.to(device)
        return result
    if isinstance(data, numpy.ndarray) or hasattr(data, "concrete"):  # (or a NumPy input traced by distrain.jit)
        target_dtype = data.dtype if dtype is None else dtypes.as_dtype(dtype)
        array = data if data.dtype == target_dtype else data.astype(target_dtype)
        return _finish(array, _device(device), False, fresh=array is not data)
    if hasattr(data, "__cuda_array_interface__"):
        return _make(data if dtype is None else data.astype(dtypes.as_dtype(dtype), copy=False))
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A cpu tensor that shares memory with the NumPy array: changes to one show in the other."""
    if not isinstance(array, numpy.ndarray) and not hasattr(array, "concrete"):  # (a traced NumPy input is fine)
        raise DTypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return _make(array)


def _filled(maker, size, dtype, device, requires_grad, op_name=None):
    shape = checked_shape(op_name or maker, size, dtype)
    device = _device(device)
    xp = backend.array_module_for(device)
    with allocating(op_name or maker, shape, dtype, on_gpu=device is not backend.CPU):
        if device is backend.CPU:
            return _finish(getattr(xp, maker)(shape, dtype=dtype), device, requires_grad)
        with xp.cuda.Device(device.index):
            return _finish(getattr(xp, maker)(shape, dtype=dtype), None, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled("zeros", size, _float_dtype(dtype), device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled("ones", size, _float_dtype(dtype), device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _filled("empty", size, _float_dtype(dtype), device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    value = fill_value.item() if isinstance(fill_value, Tensor) else fill_value
    if not isinstance(value, (int, float, complex, bool, numpy.generic)):
        raise DTypeError(f"full: fill_value must be a number, got {type(value).__name__} {value!r:.40}")
    if dtype is None:
        dtype = dtypes.infer_dtype(value)
    result = _filled("empty", (size,), dtypes.as_dtype(dtype), device, requires_grad, op_name="full")
    try:
        result._data.fill(value)
    except (OverflowError, TypeError, ValueError) as exc:
        raise ArgumentError(f"full: fill_value {value!r:.40} does not fit dtype {result.dtype} ({exc})") from None
    return result


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    shape = checked_shape("eye", (n, n if m is None else m), _float_dtype(dtype))
    with allocating("eye", shape, _float_dtype(dtype)):
        array = numpy.eye(*shape, dtype=_float_dtype(dtype))
    return _finish(array, _device(device), requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Values from start (default 0) up to, not including, end; int64 when all are integers."""
    if end is None:
        start, end = 0, start
    values = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    if not all(isinstance(v, (int, float, numpy.integer, numpy.floating)) for v in values):
        raise DTypeError(f"arange: start, end and step must be numbers, got {tuple(values)!r:.80}")
    if dtype is None:
        dtype = dtypes.int64 if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else dtypes.get_default_dtype()
    start, end, step = values
    if step == 0 or not all(math.isfinite(v) for v in values):
        raise ArgumentError(f"arange: start {start}, end {end} and step {step} must be finite and step nonzero")
    if (end - start) * step < 0:
        raise ArgumentError(f"arange: from {start} to {end} never arrives with step {step} (the signs disagree)")
    count = checked_shape("arange", (max(math.ceil((end - start) / step), 0),), dtypes.as_dtype(dtype))
    with allocating("arange", count, dtypes.as_dtype(dtype)):
        array = numpy.arange(*values, dtype=numpy.float64 if dtypes.as_dtype(dtype).kind == "f" else None)
        array = array.astype(dtypes.as_dtype(dtype))
    return _finish(array, _device(device), requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    (steps,) = checked_shape("linspace", (steps,), numpy.float64)
    with allocating("linspace", (steps,), numpy.float64):
        array = numpy.linspace(start, end, steps, dtype=numpy.float64).astype(_float_dtype(dtype))
    return _finish(array, _device(device), requires_grad)


def _random(op_name, draw, size, dtype, device, requires_grad, generator):
    shape = checked_shape(op_name, size, dtype)
    device = _device(device)
    generator = generator or default_generator(device)
    with allocating(op_name, shape, dtype, on_gpu=device is not backend.CPU):
        return _finish(draw(generator, shape, dtype), device, requires_grad)


def _floating_samples(op_name, dtype):
    dtype = _float_dtype(dtype)
    if dtype.kind != "f":
        raise DTypeError(f"{op_name}: samples of a continuous distribution need a floating-point dtype, got {dtype}")
    return dtype


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Samples of the standard normal distribution."""
    return _random("randn", lambda g, s, d: g.normal(s, d), size, _floating_samples("randn", dtype), device,
                   requires_grad, generator)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Samples of the uniform distribution on [0, 1)."""
    return _random("rand", lambda g, s, d: g.uniform(s, d), size, _floating_samples("rand", dtype), device,
                   requires_grad, generator)


def randint(low, high=None, size=None, dtype=None, device=None, requires_grad=False, generator=None):
    """Integers uniform in [low, high); `randint(high, size)` starts at 0, as in PyTorch."""
    if size is None:
        low, high, size = 0, low, high
    if size is None:
        raise DTypeError("randint() needs a size, e.g. randint(0, 10, (3,))")
    low, high = integers("randint", (low, high), "low and high")
    if not low < high:
        raise ArgumentError(f"randint: low must be less than high, got low={low}, high={high}")
    dtype = dtypes.int64 if dtype is None else dtypes.as_dtype(dtype)
    draw_dtype = dtype if dtype.kind in "iu" else dtypes.int64  # float results hold integer values, as in PyTorch
    return _random("randint", lambda g, s, d: g.integers(low, high, s, draw_dtype).astype(d, copy=False), (size,),
                   dtype, device, requires_grad, generator)


def randperm(n, dtype=None, device=None, generator=None):
    (n,) = checked_shape("randperm", (n,), numpy.int64)
    device = _device(device)
    generator = generator or default_generator(backend.CPU)
    array = numpy.asarray(generator.permutation(n), dtype=dtypes.int64 if dtype is None else dtypes.as_dtype(dtype))
    return _finish(array, device, False)


def _like(factory):
    def like(input, dtype=None, device=None, requires_grad=False, **kwargs):
        return factory(tuple(input.shape), dtype=input.dtype if dtype is None else dtype,
                       device=input.device if device is None else device, requires_grad=requires_grad, **kwargs)

    like.__name__ = factory.__name__ + "_like"
    like.__doc__ = f"`{factory.__name__}` with the shape (and, by default, dtype and device) of `input`."
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    return full(tuple(input.shape), fill_value, dtype=input.dtype if dtype is None else dtype,
                device=input.device if device is None else device, requires_grad=requires_grad)


def randint_like(input, low, high=None, dtype=None, device=None):
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(input.shape), dtype=input.dtype if dtype is None else dtype,
                   device=input.device if device is None else device)
