"""In-place ops: add_, sub_, mul_, div_, clamp_, zero_, fill_, copy_, x[i] = v, and x += y.

NOTE [ In-place ops and autograd ]
Outside the graph (grad mode off, or nothing involved requires grad) an in-place op is a
ufunc writing into the tensor's own array: no allocation, the manual SGD update of the
lecture (`w -= lr * w.grad` under no_grad) costs one pass. Every in-place op bumps the
version counter, so a graph that saved this tensor notices (autograd/graph.py).

Inside the graph the op is recorded like its out-of-place twin: the twin runs on a
snapshot of the tensor's old value, the result is written into the tensor's storage and
the tensor takes over the twin's graph node. One rule covers every in-place op, so each
gets the same gradient as its out-of-place form. A leaf that requires grad (or a view of
one) cannot be changed in place inside the graph: its `.grad` would stop meaning anything.
Changes through views of other tensors rebase the view's base: NOTE [ In-place ops on views ].
"""
from __future__ import annotations

from ...errors import AutogradError, DTypeError, ShapeError
from ..backend import array_module, move_array
import numpy

from .core import Tensor, _make, grad_state, record, wrap
from . import arithmetic, elementwise, indexing


def _records_graph(tensor, other=None):
    return grad_state.enabled and (tensor._requires_grad or getattr(other, "_requires_grad", False))


def _apply_in_graph(tensor, op_name, out_of_place, *args):
    base = tensor._base
    if tensor.grad_fn is None and tensor._requires_grad:
        raise AutogradError(
            f"{op_name}: a leaf tensor that requires grad cannot be modified in place while recording the graph; "
            "do it under `with distrain.no_grad():` (e.g. a manual parameter update) or work on a .clone()"
        )
    if base is not None and base._requires_grad and base.grad_fn is None:
        raise AutogradError(
            f"{op_name}: this tensor is a view of a leaf that requires grad, which cannot be modified in place "
            "while recording the graph; do it under `with distrain.no_grad():` or .clone() the leaf first"
        )
    snapshot = _make(tensor._data.copy(), tensor._requires_grad)
    snapshot.grad_fn = tensor.grad_fn
    snapshot._output_nr = tensor._output_nr
    result = out_of_place(snapshot, *args)
    _write(tensor, result._data, op_name)
    if base is not None:
        _rebase_view(tensor, base, result, op_name)
        return tensor
    tensor.grad_fn = result.grad_fn
    tensor._output_nr = result._output_nr
    tensor._requires_grad = result._requires_grad
    return tensor


# -- in-place changes through views -----------------------------------------------------
# NOTE [ In-place ops on views ]
# Writing through a view changes its base, so the base's history must change too: the
# base becomes "the old base with the view's region replaced by the op's result"
# (CopySlices, as PyTorch calls it), and the view becomes "that region of the new base".
# The region is described by the view's byte offset and strides inside the base's
# (C-contiguous) buffer, so any chain of basic-index, transpose or reshape views works.


def _rebase_view(view, base, result, op_name):
    base_data = base._data
    if not base_data.flags.c_contiguous:
        raise AutogradError(
            f"{op_name}: in-place change of a view whose base is not contiguous is not supported while recording "
            "the graph; make the base contiguous (.contiguous()) or use out-of-place ops"
        )
    geometry = (base_data.shape, _address(view._data) - _address(base_data), view._data.shape, view._data.strides)
    old_base = _make(base_data, base._requires_grad)
    old_base.grad_fn = base.grad_fn
    old_base._output_nr = base._output_nr
    record("CopySlices", _copy_slices_backward, (old_base, result), (base,), args=geometry)
    record("AsView", _as_view_backward, (base,), (view,), args=geometry)


def _address(array):
    array = getattr(array, "concrete", array)  # a TracedArray's address is its array's (distrain.jit)
    return array.ctypes.data if type(array) is numpy.ndarray else array.data.ptr


def _region(array, geometry):
    """The part of a C-contiguous, base-shaped `array` that the view occupies."""
    _, offset, shape, strides = geometry
    if type(array) is numpy.ndarray:
        return numpy.ndarray(shape, dtype=array.dtype, buffer=array, offset=offset, strides=strides)
    if isinstance(getattr(array, "concrete", None), numpy.ndarray):  # traced (distrain.jit): a recorded strided view
        xp = array_module(array)
        flat = array.reshape(-1)[offset // array.itemsize:]
        return xp.lib.stride_tricks.as_strided(flat, shape, strides)
    cupy = array_module(array)
    return cupy.ndarray(shape, dtype=array.dtype, memptr=array.data + offset, strides=strides)


def _copy_slices_backward(node, grad):
    geometry = node.args
    xp = array_module(grad._data)
    outside = xp.array(grad._data, order="C", copy=True)
    inside = _region(outside, geometry).copy()
    _region(outside, geometry)[...] = 0
    return wrap(outside), wrap(inside)


def _as_view_backward(node, grad):
    geometry = node.args
    xp = array_module(grad._data)
    full = xp.zeros(geometry[0], dtype=grad.dtype)
    _region(full, geometry)[...] = grad._data
    return (wrap(full),)


def _write(tensor, values, op_name):
    xp = array_module(tensor._data)
    try:
        xp.copyto(tensor._data, values, casting="same_kind")
    except TypeError:
        raise DTypeError(f"{op_name}: the result has dtype {values.dtype}, which cannot be stored in place in a "
                         f"tensor of dtype {tensor.dtype}") from None
    tensor._version_counter[0] += 1


def _ufunc_in_place(tensor, ufunc_name, other, op_name):
    data = tensor._data
    xp = array_module(data)
    value = other._data if isinstance(other, Tensor) else other
    if isinstance(other, Tensor) and type(value) is not type(data):
        value = move_array(value, tensor.device)
    try:
        getattr(xp, ufunc_name)(data, value, out=data, casting="same_kind")
    except ValueError:
        raise ShapeError(f"{op_name}: a value of shape {tuple(getattr(value, 'shape', ()))} cannot be applied in place "
                         f"to a tensor of shape {tuple(data.shape)} (it must broadcast to it)") from None
    except TypeError as exc:
        raise DTypeError(f"{op_name}: cannot store the result in place in a tensor of dtype {data.dtype} ({exc})") from None
    tensor._version_counter[0] += 1
    return tensor


def add_(self, other, alpha=1):
    if _records_graph(self, other):
        return _apply_in_graph(self, "add_", arithmetic.add, other, alpha)
    return _ufunc_in_place(self, "add", other if alpha == 1 else other * alpha, "add_")


def sub_(self, other, alpha=1):
    if _records_graph(self, other):
        return _apply_in_graph(self, "sub_", arithmetic.sub, other, alpha)
    return _ufunc_in_place(self, "subtract", other if alpha == 1 else other * alpha, "sub_")


def mul_(self, other):
    if _records_graph(self, other):
        return _apply_in_graph(self, "mul_", arithmetic.mul, other)
    return _ufunc_in_place(self, "multiply", other, "mul_")


def div_(self, other):
    if _records_graph(self, other):
        return _apply_in_graph(self, "div_", arithmetic.div, other)
    return _ufunc_in_place(self, "divide", other, "div_")


def pow_(self, exponent):
    if _records_graph(self, exponent):
        return _apply_in_graph(self, "pow_", arithmetic.pow, exponent)
    return _ufunc_in_place(self, "power", exponent, "pow_")


def clamp_(self, min=None, max=None):
    if _records_graph(self):
        return _apply_in_graph(self, "clamp_", elementwise.clamp, min, max)
    data = self._data
    low = min._data if isinstance(min, Tensor) else min
    high = max._data if isinstance(max, Tensor) else max
    if low is not None:
        array_module(data).maximum(data, low, out=data)
    if high is not None:
        array_module(data).minimum(data, high, out=data)
    self._version_counter[0] += 1
    return self


def relu_(self):
    return clamp_(self, min=0)


def fill_(self, value):
    value = value.item() if isinstance(value, Tensor) else value
    if _records_graph(self):
        return _apply_in_graph(self, "fill_", lambda s: s * 0 + value)
    self._data.fill(value)
    self._version_counter[0] += 1
    return self


def zero_(self):
    return fill_(self, 0)


def copy_(self, src, non_blocking=False):
    """Copy `src`'s values into this tensor (broadcasting, across devices and dtypes)."""
    if _records_graph(self, src):
        return _apply_in_graph(self, "copy_", lambda s, source: s * 0 + source.to(s.dtype), src)
    value = src._data if isinstance(src, Tensor) else src
    if isinstance(src, Tensor) and type(value) is not type(self._data):
        value = move_array(value, self.device)
    try:
        array_module(self._data).copyto(self._data, value, casting="unsafe")
    except ValueError:
        raise ShapeError(f"copy_: source of shape {tuple(getattr(value, 'shape', ()))} does not broadcast to the "
                         f"destination shape {tuple(self._data.shape)}") from None
    self._version_counter[0] += 1
    return self


def setitem(self, index, value):
    """x[index] = value, in place."""
    if _records_graph(self, value):
        return _apply_in_graph(self, "__setitem__", indexing.index_put, index, value)
    key, _ = indexing._array_index(index)
    data = value._data if isinstance(value, Tensor) else value
    if isinstance(value, Tensor) and type(data) is not type(self._data):
        data = move_array(data, self.device)
    try:
        self._data[key if len(key) != 1 else key[0]] = data
    except IndexError as exc:
        raise indexing.out_of_bounds(index, self._data.shape, exc) from None
    except ValueError:
        raise ShapeError(f"index assignment: a value of shape {tuple(getattr(data, 'shape', ()))} does not fit the "
                         f"selection {index!r} of a tensor of shape {tuple(self._data.shape)}") from None
    self._version_counter[0] += 1


def in_place_form(name, out_of_place):
    """`x.name(...)` for an op with no in-place kernel of its own (scatter_, masked_fill_, tril_, ...):
    its out-of-place twin's result written back into x, under NOTE [ In-place ops and autograd ]."""

    def method(self, *args, **kwargs):
        if grad_state.enabled and (self._requires_grad or any(getattr(a, "_requires_grad", False)
                                                              for a in args + tuple(kwargs.values()))):
            return _apply_in_graph(self, name, lambda snapshot: out_of_place(snapshot, *args, **kwargs))
        from ..autograd.grad_mode import no_grad

        with no_grad():
            result = out_of_place(self, *args, **kwargs)
        _write(self, result._data, name)
        return self

    method.__name__ = name
    return method
