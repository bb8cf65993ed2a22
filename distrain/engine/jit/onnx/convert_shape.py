"""Converters of shape ops: view/reshape/flatten, transposes, squeeze/unsqueeze, expand/repeat, cat/stack/split,
indexing with ints, slices, None, Ellipsis and one integer index tensor, pad and flip.

Shapes are written so that a dynamic (batch) axis stays dynamic: a size read from the
input's own axis becomes Reshape's 0 ("copy"), other sizes read from tensors are computed in
the graph (symbolic_sizes.py), and flatten copies the leading axes with 0.
"""
from __future__ import annotations

import numpy

from ...ops import TENSOR_METHODS, indexing, shape, views_and_stacks
from ...tensor import Tensor
from .convert_elementwise import operands
from .export_errors import OnnxExportError
from .graph_builder import INT64_MAX
from .registry import converts
from .symbolic_sizes import shape_operand


def _sizes(arguments):
    """`x.view(2, 3)`, `x.view((2, 3))` and `x.view(size)` alike: the sizes as a list."""
    if len(arguments) == 1 and isinstance(arguments[0], (tuple, list)):
        return list(arguments[0])
    return list(arguments)


def _axis(dim, ndim):
    return dim % ndim if ndim else 0


def reshape_to(builder, name, sizes):
    return builder.node("Reshape", [name, shape_operand(builder, sizes, name)])


@converts(shape.view, shape.reshape)
def view(builder, out, input, shape):
    return reshape_to(builder, builder.value(input), _sizes(shape))


converts(TENSOR_METHODS["view_as"], TENSOR_METHODS["reshape_as"])(
    lambda builder, out, self, other: builder.node("Reshape", [builder.value(self), builder.node(
        "Shape", [builder.value(other)])]))


@converts(shape.flatten)
def flatten(builder, out, input, start_dim=0, end_dim=-1):
    x = builder.value(input)
    ndim = input.ndim
    if ndim == 0:
        return builder.node("Reshape", [x, builder.ints([1])])
    start, end = _axis(start_dim, ndim), _axis(end_dim, ndim)
    if start == 1 and end == ndim - 1:
        return builder.node("Flatten", [x], axis=1)
    return reshape_to(builder, x, [0] * start + [-1] + list(input.shape[end + 1:]))


def transpose_with(builder, name, permutation):
    if list(permutation) == sorted(permutation):
        return name
    return builder.node("Transpose", [name], perm=[int(axis) for axis in permutation])


@converts(shape.transpose)
def transpose(builder, out, input, dim0, dim1):
    permutation = list(range(input.ndim))
    a, b = _axis(dim0, input.ndim), _axis(dim1, input.ndim)
    permutation[a], permutation[b] = permutation[b], permutation[a]
    return transpose_with(builder, builder.value(input), permutation)


converts(views_and_stacks.swapaxes)(lambda builder, out, input, axis0, axis1: transpose(builder, out, input, axis0,
                                                                                        axis1))


@converts(shape.t, shape.reverse_dims)
def reverse(builder, out, input):
    return transpose_with(builder, builder.value(input), range(input.ndim - 1, -1, -1))


converts(Tensor.__dict__["mT"].fget)(lambda builder, out, self: transpose(builder, out, self, -2, -1))


@converts(shape.permute)
def permute(builder, out, input, dims):
    return transpose_with(builder, builder.value(input), [_axis(d, input.ndim) for d in _sizes(dims)])


@converts(views_and_stacks.movedim)
def movedim(builder, out, input, source, destination):
    sources = [_axis(d, input.ndim) for d in (source if isinstance(source, (tuple, list)) else [source])]
    targets = [_axis(d, input.ndim) for d in (destination if isinstance(destination, (tuple, list)) else [destination])]
    rest = iter(axis for axis in range(input.ndim) if axis not in sources)
    placed = dict(zip(targets, sources))
    return transpose_with(builder, builder.value(input), [placed[p] if p in placed else next(rest)
                                                          for p in range(input.ndim)])


@converts(shape.squeeze)
def squeeze(builder, out, input, dim=None):
    if dim is None:
        axes = [axis for axis, size in enumerate(input.shape) if size == 1]
    else:
        dims = dim if isinstance(dim, (tuple, list)) else [dim]
        axes = sorted({_axis(d, input.ndim) for d in dims if input.shape[_axis(d, input.ndim)] == 1})
    return builder.squeeze(builder.value(input), axes) if axes else builder.value(input)


@converts(shape.unsqueeze)
def unsqueeze(builder, out, input, dim):
    return builder.unsqueeze(builder.value(input), [_axis(dim, out.ndim)])


@converts(shape.expand)
def expand(builder, out, input, sizes):
    # torch's -1 keeps a dimension; Expand broadcasts, so 1 keeps it there
    sizes = [1 if not isinstance(size, Tensor) and size == -1 else size for size in _sizes(sizes)]
    return builder.node("Expand", [builder.value(input), shape_operand(builder, sizes)])


converts(shape.expand_as)(lambda builder, out, input, other: builder.node(
    "Expand", [builder.value(input), builder.node("Shape", [builder.value(other)])]))
converts(views_and_stacks.broadcast_to)(lambda builder, out, input, size: expand(builder, out, input, size))


@converts(shape.repeat)
def repeat(builder, out, input, sizes):
    repeats = [int(size) for size in _sizes(sizes)]
    x = builder.value(input)
    if len(repeats) > input.ndim:
        x = builder.unsqueeze(x, list(range(len(repeats) - input.ndim)))
    return builder.node("Tile", [x, builder.ints(repeats)])


@converts(shape.contiguous, shape.clone, Tensor.__dict__["detach"], Tensor.__dict__["data"].fget)
def same_values(builder, out, **named):
    return builder.value(next(iter(named.values())))  # input, or a method's self


# sizes and strides: Python values, nothing to record
converts(*(TENSOR_METHODS[name] for name in ("stride", "nelement", "ndimension")))(lambda builder, out, **_: None)


@converts(shape.cat)
def cat(builder, out, tensors, dim=0):
    kept = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)]  # torch lets an empty 1-D join anything
    return builder.node("Concat", operands(builder, out._data.dtype, *kept), axis=_axis(dim, out.ndim))


@converts(shape.stack)
def stack(builder, out, tensors, dim=0):
    axis = _axis(dim, out.ndim)
    return builder.node("Concat", [builder.unsqueeze(name, [axis]) for name in
                                   operands(builder, out._data.dtype, *tensors)], axis=axis)


@converts(shape.split, shape.chunk)
def split(builder, out, input, dim=0, **_):
    axis = _axis(dim, input.ndim)
    return tuple(builder.split(builder.value(input), [piece.shape[axis] for piece in out], axis))


converts(TENSOR_METHODS["split_with_sizes"])(lambda builder, out, self, split_sizes, dim=0: split(builder, out, self,
                                                                                                  dim))


@converts(shape.unbind)
def unbind(builder, out, input, dim=0):
    axis = _axis(dim, input.ndim)
    pieces = builder.split(builder.value(input), [1] * input.shape[axis], axis)
    return tuple(builder.squeeze(piece, [axis]) for piece in pieces)


@converts(shape.narrow)
def narrow(builder, out, input, dim, start, length):
    axis = _axis(dim, input.ndim)
    start = int(start) % input.shape[axis] if int(start) < 0 else start
    return builder.node("Slice", [builder.value(input), shape_operand(builder, [start]),
                                  shape_operand(builder, [start + length]), builder.ints([axis])])


@converts(shape.flip)
def flip(builder, out, input, dims):
    axes = [_axis(d, input.ndim) for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
    minimum = numpy.iinfo(numpy.int64).min
    backwards = builder.ints([-1] * len(axes))
    return builder.node("Slice", [builder.value(input), backwards, builder.ints([minimum] * len(axes)),
                                  builder.ints(axes), backwards])


converts(TENSOR_METHODS["flip"])(lambda builder, out, self, dims: flip(builder, out, self, dims[0] if len(dims) == 1
                                                                        else dims))


@converts(indexing.index_select)
def index_select(builder, out, input, dim, index):
    return builder.node("Gather", [builder.value(input), builder.value(_as_index(index))], axis=_axis(dim, input.ndim))


def _as_index(index):
    from ... import factories

    return index if isinstance(index, Tensor) else factories.tensor(index)


@converts(indexing.getitem)
def getitem(builder, out, input, index):
    """Basic indexing as one Slice, then Squeeze (int entries) and Unsqueeze (None entries); one integer
    index tensor (or list) with full slices elsewhere as Gather."""
    entries = list(index) if isinstance(index, tuple) else [index]
    advanced = [i for i, entry in enumerate(entries) if isinstance(entry, (Tensor, list))]
    if advanced:
        return _gather_index(builder, input, entries, advanced)
    if any(entry is Ellipsis for entry in entries):
        at = entries.index(Ellipsis)
        consumed = sum(entry is not None for entry in entries) - 1
        entries[at:at + 1] = [slice(None)] * (input.ndim - consumed)
    entries += [slice(None)] * (input.ndim - sum(entry is not None for entry in entries))
    starts, ends, axes, steps, removed, added = [], [], [], [], [], []
    axis = position = 0
    for entry in entries:
        if entry is None:
            added.append(position)
            position += 1
            continue
        if isinstance(entry, slice):
            if entry != slice(None) and entry != slice(None, None, 1):
                starts.append(0 if entry.start is None else entry.start)
                ends.append(INT64_MAX if entry.stop is None else entry.stop)
                axes.append(axis)
                steps.append(1 if entry.step is None else entry.step)
            position += 1
        else:  # an int
            starts.append(entry)
            ends.append(INT64_MAX if int(entry) == -1 else entry + 1)
            axes.append(axis)
            steps.append(1)
            removed.append(axis)
        axis += 1
    name = builder.value(input)
    if axes:
        name = builder.node("Slice", [name, shape_operand(builder, starts), shape_operand(builder, ends),
                                      builder.ints(axes), builder.ints(steps)])
    if removed:
        name = builder.squeeze(name, removed)
    if added:
        name = builder.unsqueeze(name, added)
    return name


def _gather_index(builder, input, entries, advanced):
    full = all(entry == slice(None) or entry is Ellipsis for i, entry in enumerate(entries) if i not in advanced)
    index = entries[advanced[0]]
    if len(advanced) > 1 or not full or Ellipsis in entries[:advanced[0]] or \
            (isinstance(index, Tensor) and index._data.dtype.kind == "b"):
        raise OnnxExportError(f"{builder.doing}: ONNX export indexes with one integer tensor (or list) beside full "
                              f"slices (x[:, idx] -> Gather); boolean masks give data-dependent shapes. Use "
                              f"index_select, or distrain.where with the mask")
    return builder.node("Gather", [builder.value(input), builder.value(_as_index(index))], axis=advanced[0])


@converts(shape.pad)
def pad(builder, out, input, pad, mode="constant", value=0.0):
    """Constant padding (the one mode distrain's pad has), (before, after) pairs from the last axis backwards."""
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]  # last dim first
    begins, ends = [0] * input.ndim, [0] * input.ndim
    for offset, (before, after) in enumerate(pairs):
        begins[input.ndim - 1 - offset], ends[input.ndim - 1 - offset] = before, after
    value = builder.constant(numpy.asarray(0.0 if value is None else value, dtype=input._data.dtype))
    return builder.node("Pad", [builder.value(input), builder.ints(begins + ends), value], mode="constant")
