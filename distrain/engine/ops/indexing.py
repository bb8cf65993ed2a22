"""Indexing: x[...] (basic, integer-array and boolean), index assignment, gather, index_select, one_hot.

The backward of reading elements is writing the gradient back to where they came from.
With integer-array indices an element may be read several times, so the write-back must
accumulate (`xp.add.at`), never assign; basic slices and boolean masks select each
element at most once and use a plain assignment, which is much faster.
"""
from __future__ import annotations

from ...errors import DTypeError, IndexingError, ShapeError
from .. import dtypes
from ..backend import array_module
from .core import Tensor, grad_state, normalize_dim, record, sum_to_shape, wrap
from .value_checks import require_range


def _array_index(index):
    """Replace Tensors (and lists) inside an index by arrays; say whether any is advanced."""
    if not isinstance(index, tuple):
        index = (index,)
    converted = []
    advanced = False
    for item in index:
        if isinstance(item, Tensor):
            item = item._data
            if item.dtype.kind != "b":
                advanced = True
        elif isinstance(item, list):
            advanced = True
        elif hasattr(item, "dtype") and hasattr(item, "shape") and item.dtype.kind != "b":
            advanced = True
        converted.append(item)
    return tuple(converted), advanced


def out_of_bounds(index, shape, exc):
    """The IndexingError for NumPy's IndexError `exc`, naming the index and the tensor's shape."""
    return IndexingError(f"index {index!r:.200} is out of bounds for a tensor of shape {tuple(shape)}: {exc}")


def getitem(input, index):
    data = input._data
    key, advanced = _array_index(index)
    try:
        out = data[key if len(key) != 1 else key[0]]
    except IndexError as exc:
        raise out_of_bounds(index, data.shape, exc) from None
    if not advanced and all(not hasattr(k, "dtype") for k in key):
        from .shape import _as_view

        result = _as_view(out, input)
    else:
        result = wrap(out)
    if grad_state.enabled and input._requires_grad:
        record("Index", _getitem_backward, (input,), (result,), args=(data.shape, key, advanced))
    return result


def _getitem_backward(node, grad):
    shape, key, advanced = node.args
    return (index_into_zeros(grad, shape, key, advanced),)


def index_into_zeros(values, shape, key, accumulate):
    """A zero tensor of `shape` with `values` added at `key` (the adjoint of indexing)."""
    xp = array_module(values._data)
    out = xp.zeros(shape, dtype=values.dtype)
    index = key if len(key) != 1 else key[0]
    if accumulate:
        if xp.__name__ == "numpy":
            xp.add.at(out, index, values._data)
        else:
            import cupyx

            cupyx.scatter_add(out, index, values._data)
    else:
        out[index] = values._data
    result = wrap(out)
    if grad_state.enabled and values._requires_grad:
        record("IndexBackward", _index_into_zeros_backward, (values,), (result,), args=key)
    return result


def _index_into_zeros_backward(node, grad):
    return (getitem(grad, node.args),)


def index_put(input, index, values):
    """An out-of-place `input[index] = values` (the differentiable core of __setitem__)."""
    data = input._data
    key, _ = _array_index(index)
    values_data = values._data if isinstance(values, Tensor) else values
    out = data.copy()
    try:
        out[key if len(key) != 1 else key[0]] = values_data
    except IndexError as exc:
        raise out_of_bounds(index, data.shape, exc) from None
    except ValueError:
        raise ShapeError(
            f"index assignment: values of shape {tuple(getattr(values_data, 'shape', ()))} cannot be assigned to "
            f"the selection {index!r} of a tensor of shape {tuple(data.shape)}"
        ) from None
    result = wrap(out)
    if grad_state.enabled and (input._requires_grad or getattr(values, "_requires_grad", False)):
        record("IndexPut", _index_put_backward, (input, values), (result,),
               args=(key, getattr(values_data, "shape", ())))
    return result


def _index_put_backward(node, grad):
    key, values_shape = node.args
    input_edge, values_edge = node.next_edges
    grad_input = grad_values = None
    if input_edge is not None:
        grad_input = index_put(grad, key, 0)  # itself differentiable, for create_graph
    if values_edge is not None:
        grad_values = sum_to_shape(getitem(grad, key), tuple(values_shape))
    return grad_input, grad_values


def _open_mesh(index_shape, dim, index, xp):
    """Index arrays addressing element [i0, ..., index[i], ...] for every position of `index`."""
    mesh = []
    for axis, extent in enumerate(index_shape):
        if axis == dim:
            mesh.append(index)
        else:
            shape = [1] * len(index_shape)
            shape[axis] = extent
            mesh.append(xp.arange(extent).reshape(shape))
    return tuple(mesh)


def gather(input, dim, index):
    """out[i][j] = input[index[i][j]][j] for dim=0 (and likewise for other dims)."""
    data = input._data
    index_data = index._data if isinstance(index, Tensor) else index
    axis = normalize_dim(dim, data.ndim, "gather")
    if getattr(index_data, "dtype", None) is None or index_data.dtype.kind not in "iu":
        raise DTypeError(f"gather: index must be an integer tensor, got {getattr(index_data, 'dtype', type(index_data))}")
    if index_data.ndim != data.ndim:
        raise ShapeError(f"gather: index has {index_data.ndim} dimensions but input has {data.ndim} (shapes "
                         f"{tuple(index_data.shape)} and {tuple(data.shape)})")
    for d, (n_index, n_input) in enumerate(zip(index_data.shape, data.shape)):
        if d != axis and n_index > n_input:
            raise ShapeError(f"gather: index shape {tuple(index_data.shape)} exceeds input shape {tuple(data.shape)} in dim {d}")
    xp = array_module(data)
    require_range(index_data, -data.shape[axis], data.shape[axis], IndexingError, "gather: index values range over "
                  f"[{{lowest}}, {{highest}}] but dim {axis} of the input (shape {tuple(data.shape)}) has size "
                  f"{data.shape[axis]}")
    mesh = _open_mesh(index_data.shape, axis, index_data, xp)
    result = wrap(data[mesh])
    if grad_state.enabled and input._requires_grad:
        record("Gather", _gather_backward, (input,), (result,), args=(data.shape, mesh))
    return result


def _gather_backward(node, grad):
    shape, mesh = node.args
    return (index_into_zeros(grad, shape, mesh, True),)


def index_select(input, dim, index):
    data = input._data
    index_data = index._data if isinstance(index, Tensor) else array_module(data).asarray(index)
    if index_data.ndim > 1:
        raise ShapeError(f"index_select: index must be 1-D, got shape {tuple(index_data.shape)}")
    axis = normalize_dim(dim, data.ndim, "index_select")
    key = (slice(None),) * axis + (index_data.reshape(-1),)
    return getitem(input, key)


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding of class indices: shape (*tensor.shape, num_classes)."""
    data = tensor._data
    if data.dtype.kind not in "iu":
        raise DTypeError(f"one_hot: expected an integer tensor of class indices, got dtype {data.dtype}")
    xp = array_module(data)
    if num_classes < 0:
        num_classes = int(data.max()) + 1 if data.size else 0
    require_range(data, 0, num_classes, ShapeError, f"one_hot: class values must be in [0, {num_classes}), got range "
                  "[{lowest}, {highest}]")
    return wrap((data[..., None] == xp.arange(num_classes)).astype(dtypes.int64))
