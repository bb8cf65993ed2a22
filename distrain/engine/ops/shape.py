"""Shape ops: reshape/view, flatten, transpose/permute, squeeze/unsqueeze, expand, repeat,
cat/stack, split/chunk.

Ops that return a view share the input's storage and version counter (`_as_view`), so an
in-place change through the view is seen by every graph that saved the original.
Their backward reshapes, transposes or sums the gradient back; none copies data that a
view can describe.
"""
from __future__ import annotations

import numpy

from ...errors import ArgumentError, ShapeError
from ..backend import array_module
from ..sizes import allocating, checked_shape, integers
from .core import Tensor, grad_state, normalize_dim, record, sum_to_shape, wrap


def _as_view(out, input):
    result = wrap(out)
    result._version_counter = input._version_counter
    result._base = input if input._base is None else input._base
    return result


def _resolve_shape(name, shape, input_shape, numel):
    if shape.count(-1) > 1:
        raise ShapeError(f"{name}: only one dimension can be -1, got shape {shape}")
    known = 1
    for n in shape:
        if n != -1:
            known *= n
    if -1 in shape:
        if known == 0 or numel % known:
            raise ShapeError(f"{name}: shape {shape} is invalid for an input of shape {tuple(input_shape)} ({numel} elements)")
        shape = tuple(numel // known if n == -1 else n for n in shape)
    elif known != numel:
        raise ShapeError(f"{name}: shape {shape} is invalid for an input of shape {tuple(input_shape)} ({numel} elements)")
    return shape


def reshape(input, *shape):
    data = input._data
    shape = _resolve_shape("reshape", integers("reshape", shape), data.shape, data.size)
    out = data.reshape(shape)
    is_view = data.flags.c_contiguous or array_module(data).may_share_memory(out, data)
    result = _as_view(out, input) if is_view else wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Reshape", _reshape_backward, (input,), (result,), args=data.shape)
    return result


def _reshape_backward(node, grad):
    return (grad.reshape(node.args),)


def view(input, *shape):
    """Like reshape, but never copies: fails when the strides cannot describe the new shape.

    One exception: distrain's channel-major conv activations (see the comment below) are
    copied, so that PyTorch's `x.view(x.size(0), -1)` after a convolution works.
    """
    data = input._data
    shape = _resolve_shape("view", integers("view", shape), data.shape, data.size)
    xp = array_module(data)
    try:
        out = xp.reshape(data, shape, copy=False) if xp.__name__ == "numpy" else _view_or_fail(data, shape)
    except ValueError:
        if _channel_major(data):
            # NOTE [ Convolution layout ] (ops/conv.py): conv, and the ops after it, keep
            # activations channel-major in memory, where PyTorch's would be contiguous and
            # `x.view(N, -1)` (every CNN tutorial's flatten) works. So view copies here,
            # like reshape, rather than fail on a layout the user never chose.
            return reshape(input, shape)
        raise ShapeError(
            f"view: a tensor of shape {tuple(data.shape)} with strides {data.strides} cannot be viewed as {shape} "
            "without copying; use .reshape() (or .contiguous().view())"
        ) from None
    result = _as_view(out, input)
    if grad_state.enabled and input._requires_grad:
        record("View", _reshape_backward, (input,), (result,), args=data.shape)
    return result


def _channel_major(data):
    """True for an (N, C, H, W) array laid out as contiguous (C, N, H, W) memory: distrain's conv layout."""
    if data.ndim != 4 or data.strides[1] <= data.strides[0]:
        return False
    return data.transpose(1, 0, 2, 3).flags.c_contiguous


def _view_or_fail(data, shape):
    out = data.reshape(shape)
    # (a TracedArray's concrete array says whether the reshape copied: distrain.jit on the GPU)
    concrete_out, concrete_in = getattr(out, "concrete", out), getattr(data, "concrete", data)
    if concrete_out.data.ptr != concrete_in.data.ptr or (concrete_out.base is None and data.size > 1):
        raise ValueError("copy needed")
    return out


def flatten(input, start_dim=0, end_dim=-1):
    shape = input._data.shape
    if not shape:
        return reshape(input, (1,))
    start = normalize_dim(start_dim, len(shape), "flatten")
    end = normalize_dim(end_dim, len(shape), "flatten")
    if start > end:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    if start == end:
        return input
    return reshape(input, shape[:start] + (-1,) + shape[end + 1:])


def permute(input, *dims):
    data = input._data
    dims = tuple(normalize_dim(d, data.ndim, "permute") for d in integers("permute", dims, "dims"))
    if sorted(dims) != list(range(data.ndim)):
        raise ShapeError(f"permute: {dims} is not a permutation of the {data.ndim} dimensions of shape {tuple(data.shape)}")
    result = _as_view(data.transpose(dims), input)
    if grad_state.enabled and input._requires_grad:
        inverse = [0] * len(dims)
        for position, d in enumerate(dims):
            inverse[d] = position
        record("Permute", _permute_backward, (input,), (result,), args=tuple(inverse))
    return result


def _permute_backward(node, grad):
    return (grad.permute(node.args),)


def transpose(input, dim0, dim1):
    data = input._data
    for dim in (dim0, dim1):
        if isinstance(dim, bool) or not isinstance(dim, int) or not -max(data.ndim, 1) <= dim < max(data.ndim, 1):
            raise ShapeError(f"transpose: dims ({dim0!r:.20}, {dim1!r:.20}) are out of range for a tensor of shape "
                             f"{tuple(data.shape)}")
    if data.ndim == 0:
        return input
    out = data.swapaxes(dim0, dim1)  # swapping is its own inverse, negative dims included
    result = _as_view(out, input)
    if grad_state.enabled and input._requires_grad:
        record("Transpose", _transpose_backward, (input,), (result,), args=(dim0, dim1))
    return result


def _transpose_backward(node, grad):
    return (grad.transpose(*node.args),)


def t(input):
    if input.ndim > 2:
        raise ShapeError(f"t() expects a tensor with at most 2 dimensions, got shape {tuple(input.shape)}; use transpose()")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def reverse_dims(input):
    """x.T: all dimensions reversed."""
    return permute(input, tuple(range(input.ndim - 1, -1, -1))) if input.ndim > 1 else input


def squeeze(input, dim=None):
    shape = input._data.shape
    if dim is None:
        new_shape = tuple(n for n in shape if n != 1)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        axes = {normalize_dim(d, len(shape), "squeeze") for d in dims} if shape else set()
        new_shape = tuple(n for i, n in enumerate(shape) if not (i in axes and n == 1))
    return input if new_shape == shape else reshape(input, new_shape)


def unsqueeze(input, dim):
    shape = input._data.shape
    if not -len(shape) - 1 <= dim <= len(shape):
        raise ShapeError(f"unsqueeze: dim {dim} is out of range for a tensor of shape {tuple(shape)}")
    position = dim if dim >= 0 else dim + len(shape) + 1
    return reshape(input, shape[:position] + (1,) + shape[position:])


def expand(input, *sizes):
    data = input._data
    sizes = integers("expand", sizes)
    if len(sizes) < data.ndim:
        raise ShapeError(f"expand: the target size {sizes} has fewer dimensions than the tensor's shape {tuple(data.shape)}")
    lead = len(sizes) - data.ndim
    target = tuple(data.shape[i - lead] if (n == -1 and i >= lead) else n for i, n in enumerate(sizes))
    if target == data.shape:
        return input
    for i, n in enumerate(data.shape):
        if n != 1 and n != target[i + lead]:
            raise ShapeError(f"expand: cannot expand shape {tuple(data.shape)} to {target} (dimension {i}: {n} != {target[i + lead]})")
    result = _as_view(array_module(data).broadcast_to(data, target), input)
    if grad_state.enabled and input._requires_grad:
        record("Expand", _expand_backward, (input,), (result,), args=data.shape)
    return result


def _expand_backward(node, grad):
    return (sum_to_shape(grad, node.args),)


def expand_as(input, other):
    return expand(input, other.shape)


def repeat(input, *sizes):
    """Tile the tensor `sizes[i]` times along each dimension (PyTorch's repeat, NumPy's tile)."""
    data = input._data
    sizes = checked_shape("repeat", sizes)
    if len(sizes) < data.ndim:
        raise ShapeError(f"repeat: needs at least {data.ndim} repeat counts for shape {tuple(data.shape)}, got {sizes}")
    shape = (1,) * (len(sizes) - data.ndim) + tuple(data.shape)
    repeated = checked_shape("repeat", tuple(count * extent for count, extent in zip(sizes, shape)), data.dtype)
    with allocating("repeat", repeated, data.dtype, on_gpu=type(data) is not numpy.ndarray):
        result = wrap(array_module(data).tile(data, sizes))
    if grad_state.enabled and input._requires_grad:
        record("Repeat", _repeat_backward, (input,), (result,), args=(data.shape, sizes))
    return result


def _repeat_backward(node, grad):
    shape, sizes = node.args
    shape = (1,) * (len(sizes) - len(shape)) + tuple(shape)
    interleaved = []
    for count, extent in zip(sizes, shape):
        interleaved += [count, extent]
    summed = grad.reshape(interleaved).sum(dim=tuple(range(0, 2 * len(sizes), 2)))
    return (summed.reshape(node.args[0]),)


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("cat: expected a non-empty sequence of tensors")
    first = tensors[0]
    zero_dimensional = next((index for index, t in enumerate(tensors) if t.ndim == 0), None)
    if zero_dimensional is not None:
        raise ShapeError(f"cat: tensor {zero_dimensional} is zero-dimensional and cannot be concatenated; "
                         "use stack, or unsqueeze it first")
    axis = normalize_dim(dim, first.ndim, "cat")
    for index, t in enumerate(tensors[1:], 1):
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ShapeError(
                f"cat: tensor {index} has shape {tuple(t.shape)} but tensor 0 has shape {tuple(first.shape)}; "
                f"all dimensions except dim {axis} must match"
            )
        if t.device != first.device:
            from ...errors import DeviceError

            raise DeviceError(f"cat: tensor {index} is on {t.device} but tensor 0 is on {first.device}")
    tensors = _promoted(tensors)
    xp = array_module(first._data)
    result = wrap(xp.concatenate([t._data for t in tensors], axis=axis))
    if grad_state.enabled and any(t._requires_grad for t in tensors):
        record("Cat", _cat_backward, tuple(tensors), (result,), args=(axis, [t._data.shape[axis] for t in tensors]))
    return result


def _promoted(tensors):
    """The tensors in PyTorch's common dtype: the widest float among them if any (integers do not
    widen floats: int64 with float32 is float32), else NumPy's integer promotion. The
    conversions are recorded, so each input's gradient comes back in its own dtype."""
    kinds = {t._data.dtype for t in tensors}
    if len(kinds) == 1:
        return tensors
    floats = [d for d in kinds if d.kind in "fc"]
    target = numpy.result_type(*(floats or kinds))
    return [t if t._data.dtype == target else t.to(target) for t in tensors]


def _cat_backward(node, grad):
    axis, extents = node.args
    pieces = []
    start = 0
    for edge, extent in zip(node.next_edges, extents):
        pieces.append(None if edge is None else grad.narrow(axis, start, extent))
        start += extent
    return tuple(pieces)


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("stack: expected a non-empty sequence of tensors")
    for index, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise ShapeError(f"stack: tensor {index} has shape {tuple(t.shape)} but tensor 0 has shape {tuple(tensors[0].shape)}; all must be equal")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def narrow(input, dim, start, length):
    if input.ndim == 0:
        raise ShapeError("narrow: cannot narrow a 0-d tensor")
    axis = normalize_dim(dim, input.ndim, "narrow")
    extent = input.shape[axis]
    start, length = integers("narrow", (start, length), "start and length")
    first = start + extent if start < 0 else start
    if not 0 <= first <= extent or length < 0 or first + length > extent:
        raise ShapeError(f"narrow: start {start} and length {length} do not fit dim {axis} of shape "
                         f"{tuple(input.shape)} (size {extent})")
    start = first
    index = (slice(None),) * axis + (slice(start, start + length),)
    return input[index]


def split(input, split_size_or_sections, dim=0):
    """Pieces of `split_size` along dim (the last may be smaller), or of the given sizes."""
    axis = normalize_dim(dim, input.ndim, "split")
    extent = input.shape[axis]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ShapeError(f"split: split_size must be positive, got {split_size_or_sections}")
        sizes = [min(split_size_or_sections, extent - start) for start in range(0, extent, split_size_or_sections)] or [0]
    else:
        sizes = list(integers("split", tuple(split_size_or_sections), "split sizes"))
        if sum(sizes) != extent or min(sizes, default=0) < 0:
            raise ShapeError(f"split: sizes {sizes} sum to {sum(sizes)} but dim {axis} of shape {tuple(input.shape)} has {extent}")
    data = input._data
    lead = (slice(None),) * axis
    pieces = []
    start = 0
    for size in sizes:
        pieces.append(_as_view(data[lead + (slice(start, start + size),)], input))
        start += size
    outputs = tuple(pieces)
    if grad_state.enabled and input._requires_grad:
        record("Split", _split_backward, (input,), outputs, args=(axis, [o._data.shape for o in outputs]))
    return outputs


def _split_backward(node, grads):
    axis, shapes = node.args
    if node.n_outputs == 1:
        grads = (grads,)
    present = next(g for g in grads if g is not None)
    xp = array_module(present._data)
    filled = [g if g is not None else wrap(xp.zeros(shape, dtype=present.dtype)) for g, shape in zip(grads, shapes)]
    return (cat(filled, axis),)


def chunk(input, chunks, dim=0):
    if not isinstance(chunks, int) or chunks <= 0:
        raise ArgumentError(f"chunk: chunks must be a positive int, got {chunks!r}")
    axis = normalize_dim(dim, input.ndim, "chunk")
    extent = input.shape[axis]
    size = -(-extent // chunks) if extent else 1
    return split(input, max(size, 1), axis)


def unbind(input, dim=0):
    axis = normalize_dim(dim, input.ndim, "unbind")
    return tuple(squeeze(piece, axis) for piece in split(input, 1, axis))


def contiguous(input):
    data = input._data
    if data.flags.c_contiguous:
        return input
    result = wrap(array_module(data).ascontiguousarray(data))
    if grad_state.enabled and input._requires_grad:
        record("Contiguous", _identity_backward, (input,), (result,))
    return result


def _identity_backward(node, grad):
    return (grad,)


def clone(input):
    result = wrap(input._data.copy())
    if grad_state.enabled and input._requires_grad:
        record("Clone", _identity_backward, (input,), (result,))
    return result


def flip(input, dims):
    data = input._data
    axes = tuple(normalize_dim(d, data.ndim, "flip") for d in (dims if isinstance(dims, (tuple, list)) else (dims,)))
    result = wrap(array_module(data).flip(data, axis=axes).copy())
    if grad_state.enabled and input._requires_grad:
        record("Flip", _flip_backward, (input,), (result,), args=axes)
    return result


def _flip_backward(node, grad):
    return (flip(grad, node.args),)


__all__ = ["reshape", "view", "flatten", "permute", "transpose", "t", "reverse_dims", "squeeze", "unsqueeze",
           "expand", "expand_as", "repeat", "cat", "stack", "narrow", "split", "chunk", "unbind", "contiguous",
           "clone", "flip", "Tensor"]


def pad(input, pad, mode="constant", value=0.0):
    """Pad with a constant, like torch.nn.functional.pad: `pad` pairs run from the last dim
    backwards, (left, right) for the last, then (top, bottom) for the one before, ...

    Its backward crops the gradient back to the input's region.
    """
    if mode != "constant":
        raise ArgumentError(f"pad: only mode='constant' is supported, got {mode!r}")
    pad = tuple(int(p) for p in pad)
    data = input._data
    if len(pad) % 2 or len(pad) // 2 > data.ndim:
        raise ShapeError(f"pad: expected (left, right, ...) pairs for at most {data.ndim} dimensions, got {pad}")
    if min(pad, default=0) < 0:
        raise ArgumentError(f"pad: negative padding {pad} is not supported; slice the tensor instead")
    widths = [(0, 0)] * data.ndim
    for pair_index in range(len(pad) // 2):
        widths[data.ndim - 1 - pair_index] = (pad[2 * pair_index], pad[2 * pair_index + 1])
    out = array_module(data).pad(data, widths, constant_values=value)
    result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        region = tuple(slice(before, before + extent) for (before, _), extent in zip(widths, data.shape))
        record("ConstantPad", _pad_backward, (input,), (result,), args=region)
    return result


def _pad_backward(node, grad):
    return (grad[node.args],)
