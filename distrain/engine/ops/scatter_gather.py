"""Writing by index: scatter, scatter_add, scatter_reduce, index_add, index_copy, index_fill, index_put,
masked_fill, masked_scatter, fill_diagonal_, nonzero.

Each is one of indexing's two differentiable primitives applied at an index built here:
assignment (`assign_at`, indexing's index_put: the overwritten positions get no gradient from
the input, the written values get the gradient at their target) or `input + index_into_zeros(...)`
(accumulation: the input's gradient passes unchanged, the added values gather theirs).
So no op here needs a backward of its own, and create_graph works through all of them.
The in-place forms (`scatter_`, ...) follow NOTE [ In-place ops and autograd ].
"""
from __future__ import annotations

import numpy

from ...errors import DTypeError, IndexingError, ShapeError
from .. import dtypes
from ..backend import array_module, is_numpy
from .core import Tensor, as_tensor_like, normalize_dim, wrap
from .value_checks import require_range
from .indexing import _open_mesh, index_into_zeros
from .indexing import index_put as assign_at


def _index_array(op_name, index, like):
    data = index._data if isinstance(index, Tensor) else array_module(like._data).asarray(index)
    if data.dtype.kind not in "iu":
        raise DTypeError(f"{op_name}: index must be an integer tensor (int64), got dtype {data.dtype}")
    return data


def _check_in_range(op_name, index_data, extent, axis, shape):
    require_range(index_data, 0, extent, IndexingError, f"{op_name}: index values range over [{{lowest}}, {{highest}}] "
                  f"but dim {axis} of the input (shape {tuple(shape)}) has size {extent}; each must be in [0, {extent})")


def _scatter_target(op_name, input, dim, index, src):
    """(mesh, src narrowed to the index's shape or None) after PyTorch's shape checks for scatter."""
    data = input._data
    axis = normalize_dim(dim, data.ndim, op_name)
    index_data = _index_array(op_name, index, input)
    if data.ndim == 0:
        raise ShapeError(f"{op_name}: input is 0-d; unsqueeze it to shape (1,) first")
    if index_data.ndim != data.ndim:
        raise ShapeError(f"{op_name}: index has {index_data.ndim} dimension(s) but input has {data.ndim} (shapes "
                         f"{tuple(index_data.shape)} and {tuple(data.shape)}); they must have the same number")
    for d, (n_index, n_input) in enumerate(zip(index_data.shape, data.shape)):
        n_src = src.shape[d] if isinstance(src, Tensor) and src.ndim == data.ndim else n_index
        if (d != axis and n_index > n_input) or n_index > n_src:
            raise ShapeError(f"{op_name}: index of shape {tuple(index_data.shape)} is larger than input "
                             f"{tuple(data.shape)} (outside dim {axis}) or src "
                             f"{tuple(src.shape) if isinstance(src, Tensor) else ()} in dim {d}")
    if isinstance(src, Tensor):
        if src.ndim != data.ndim:
            raise ShapeError(f"{op_name}: src has shape {tuple(src.shape)} but input has {data.ndim} dimensions "
                             f"(shape {tuple(data.shape)}); they must have the same number")
        if tuple(src.shape) != tuple(index_data.shape):
            src = src[tuple(slice(0, n) for n in index_data.shape)]
    _check_in_range(op_name, index_data, data.shape[axis], axis, data.shape)
    return _open_mesh(index_data.shape, axis, index_data, array_module(data)), src


def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    """out = input, then out[index[i][j]][j] = src[i][j] for dim=0 (and likewise for other dims).

    `src` may be a tensor or a number (or pass `value=`). reduce="add" is scatter_add;
    "multiply" is not supported (PyTorch deprecates both in favour of scatter_reduce).
    """
    if src is None:
        src = value
    if src is None:
        raise DTypeError("scatter: give src (a tensor) or value (a number)")
    if reduce == "add":
        return scatter_add(input, dim, index, src if isinstance(src, Tensor) else _filled_like_index(src, index, input))
    if reduce is not None:
        raise DTypeError(f"scatter: reduce={reduce!r} is not supported; use reduce='add' or scatter_add")
    mesh, src = _scatter_target("scatter", input, dim, index, src)
    if isinstance(src, Tensor) and src.dtype != input.dtype:
        src = src.to(input.dtype)
    return assign_at(input, mesh, src)


def _filled_like_index(value, index, like):
    index_data = _index_array("scatter", index, like)
    return wrap(array_module(like._data).full(index_data.shape, value, dtype=like.dtype))


def scatter_add(input, dim, index, src):
    """out = input, then out[index[i][j]][j] += src[i][j] for dim=0; repeated indices all add up."""
    if not isinstance(src, Tensor):
        raise DTypeError(f"scatter_add: src must be a tensor, got {type(src).__name__}")
    mesh, src = _scatter_target("scatter_add", input, dim, index, src)
    return _add_at(input, mesh, src)


def _add_at(input, key, values):
    if values.dtype != input.dtype:
        values = values.to(input.dtype)
    return input + index_into_zeros(values, tuple(input.shape), key, True)


def _index_along(op_name, input, dim, index):
    """(axis, key selecting `index` along `axis`) for the index_* ops: a 1-D index of valid positions."""
    data = input._data
    axis = normalize_dim(dim, data.ndim, op_name)
    index_data = _index_array(op_name, index, input)
    if index_data.ndim > 1:
        raise ShapeError(f"{op_name}: index must be 1-D, got shape {tuple(index_data.shape)}")
    index_data = index_data.reshape(-1)
    extent = data.shape[axis] if data.ndim else 1
    _check_in_range(op_name, index_data, extent, axis, data.shape)
    return axis, (slice(None),) * axis + (index_data,)


def _check_source(op_name, input, axis, index_length, source):
    expected = list(input.shape)
    if expected:
        expected[axis] = index_length
    if tuple(source.shape) != tuple(expected) and not (source.ndim == 0 and not expected):
        raise ShapeError(f"{op_name}: source must have shape {tuple(expected)} (input {tuple(input.shape)} with dim "
                         f"{axis} the index's length {index_length}), got {tuple(source.shape)}")


def index_add(input, dim, index, source, *, alpha=1):
    """out = input, then out[..., index[i], ...] += alpha * source[..., i, ...] along `dim`."""
    axis, key = _index_along("index_add", input, dim, index)
    _check_source("index_add", input, axis, key[-1].shape[0], source)
    if input.ndim == 0:
        return input + (source * alpha).reshape(()) if key[-1].size else input
    return _add_at(input, key, source if alpha == 1 else source * alpha)


def index_copy(input, dim, index, source):
    """out = input, then out[..., index[i], ...] = source[..., i, ...] along `dim`."""
    axis, key = _index_along("index_copy", input, dim, index)
    _check_source("index_copy", input, axis, key[-1].shape[0], source)
    return assign_at(input, key, source.to(input.dtype))


def index_fill(input, dim, index, value):
    """out = input with every slice index[i] along `dim` set to `value` (a number or 0-d tensor)."""
    _, key = _index_along("index_fill", input, dim, index)
    if isinstance(value, Tensor) and value.ndim:
        raise ShapeError(f"index_fill: value must be a number or a 0-d tensor, got shape {tuple(value.shape)}")
    return assign_at(input, key, value.to(input.dtype) if isinstance(value, Tensor) else value)


def masked_fill(input, mask, value):
    """out = input where mask is False, value where True; mask broadcasts to the input's shape and
    the result keeps the input's dtype and shape (PyTorch's rule)."""
    from .elementwise import where

    mask_data = mask._data if isinstance(mask, Tensor) else mask
    if getattr(mask_data, "dtype", None) is None or mask_data.dtype.kind != "b":
        raise DTypeError(f"masked_fill: mask must be a bool tensor, got {getattr(mask_data, 'dtype', type(mask))}")
    if isinstance(value, Tensor) and value.ndim:
        raise ShapeError(f"masked_fill: value must be a number or a 0-d tensor, got shape {tuple(value.shape)}")
    try:
        fits = numpy.broadcast_shapes(mask_data.shape, input._data.shape) == input._data.shape
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"masked_fill: mask of shape {tuple(mask_data.shape)} does not broadcast to the input's "
                         f"shape {tuple(input.shape)}")
    fill = value.to(input.dtype) if isinstance(value, Tensor) else as_tensor_like(value, input).to(input.dtype)
    return where(mask, fill, input)


def nonzero(input, *, as_tuple=False):
    """Positions of the nonzero elements: an int64 (count, ndim) tensor, or one 1-D tensor per dim."""
    data = input._data
    xp = array_module(data)
    positions = xp.nonzero(data.reshape(1) if data.ndim == 0 else data)
    if as_tuple:
        return tuple(wrap(p.astype(dtypes.int64, copy=False)) for p in positions)
    stacked = xp.stack(positions, axis=1) if data.ndim else xp.zeros((len(positions[0]), 0), dtype=dtypes.int64)
    return wrap(stacked.astype(dtypes.int64, copy=False))


def argwhere(input):
    return nonzero(input)


def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """out = input, then each src[i][j] combined into out[index[i][j]][j] (dim=0) by `reduce`:
    "sum", "mean", "amax" or "amin"; include_self=False leaves input's own values out of the
    targets' reductions. amax/amin share a target's gradient evenly among the values that tie
    for the extreme, as PyTorch does."""
    from .elementwise import where

    if reduce not in ("sum", "mean", "amax", "amin"):
        raise DTypeError(f"scatter_reduce: reduce must be 'sum', 'mean', 'amax' or 'amin', got {reduce!r} "
                         "('prod' is not supported)")
    if not isinstance(src, Tensor):
        raise DTypeError(f"scatter_reduce: src must be a tensor, got {type(src).__name__}")
    mesh, src = _scatter_target("scatter_reduce", input, dim, index, src)
    src = src.to(input.dtype)
    xp = array_module(input._data)
    hits = index_into_zeros(wrap(xp.ones(src.shape, dtype=input.dtype)), tuple(input.shape), mesh, True)
    hit = hits._data > 0
    base = input if include_self else assign_at(input, mesh, 0)
    if reduce in ("sum", "mean"):
        total = _add_at(base, mesh, src)
        if reduce == "sum":
            return total
        count = hits + 1.0 if include_self else where(wrap(hit), hits, 1.0)
        return where(wrap(hit), total / count, input)
    return _scatter_extreme(input, mesh, src, reduce, include_self, hit)


def _scatter_extreme(input, mesh, src, reduce, include_self, hit):
    """amax / amin by scatter: the values on arrays, the gradient through a tie-sharing mask."""
    from .elementwise import where

    xp = array_module(input._data)
    fill = -xp.inf if reduce == "amax" else xp.inf
    if input.dtype.kind != "f":
        fill = xp.iinfo(input.dtype).min if reduce == "amax" else xp.iinfo(input.dtype).max
    extreme = input._data.copy() if include_self else xp.where(hit, fill, input._data).astype(input.dtype)
    if is_numpy(xp):
        (numpy.maximum if reduce == "amax" else numpy.minimum).at(extreme, mesh, src._data)
    else:  # CuPy's ufuncs have no .at; cupyx has the scatter forms (as indexing uses scatter_add)
        import cupyx

        (cupyx.scatter_max if reduce == "amax" else cupyx.scatter_min)(extreme, mesh, src._data)
    result = wrap(extreme).detach()
    # input's own value counts where it ties for the extreme, and wherever no src value landed
    own = wrap(((input._data == extreme) | ~hit) if include_self else ~hit)
    from_src = wrap(src._data == extreme[mesh])
    shares = own.to(input.dtype) + index_into_zeros(from_src.to(input.dtype), tuple(input.shape), mesh, True)
    weight = 1.0 / shares
    picked_self = where(own, input * weight, 0.0)
    picked_src = index_into_zeros(where(from_src, src * weight[mesh], 0.0), tuple(input.shape), mesh, True)
    # the values are `result`; the graph is that of the weighted sum of the tied elements
    return picked_self + picked_src + (result - (picked_self + picked_src).detach())


def index_put(input, indices, values, accumulate=False):
    """out = input, then out[indices] = values (or += with accumulate=True; repeated indices add up).

    `indices` is a tuple of index tensors, as `input[indices]` reads; values broadcast to the selection."""
    from .indexing import getitem

    if not isinstance(indices, (tuple, list)):
        raise DTypeError(f"index_put: indices must be a tuple of tensors, got {type(indices).__name__}")
    key = tuple(indices)
    if not isinstance(values, Tensor):
        values = as_tensor_like(values, input)
    values = values.to(input.dtype)
    if not accumulate:
        return assign_at(input, key, values)
    from ..autograd.grad_mode import no_grad

    with no_grad():
        selected = tuple(getitem(input, key).shape)
    try:
        values = values.expand(selected)
    except ShapeError:
        raise ShapeError(f"index_put: values of shape {tuple(values.shape)} do not broadcast to the selection's "
                         f"shape {selected}") from None
    from .indexing import _array_index

    return _add_at(input, _array_index(key)[0], values)


def masked_scatter(input, mask, source):
    """out = input with the positions where `mask` is True filled, in order, from source's elements."""
    mask_data = mask._data if isinstance(mask, Tensor) else mask
    if getattr(mask_data, "dtype", None) is None or mask_data.dtype.kind != "b":
        raise DTypeError(f"masked_scatter: mask must be a bool tensor, got {getattr(mask_data, 'dtype', type(mask))}")
    xp = array_module(input._data)
    try:
        full_mask = xp.broadcast_to(mask_data, input._data.shape)
    except ValueError:
        raise ShapeError(f"masked_scatter: mask of shape {tuple(mask_data.shape)} does not broadcast to the input's "
                         f"shape {tuple(input.shape)}") from None
    positions = xp.nonzero(full_mask)
    count = int(positions[0].shape[0]) if positions else int(full_mask.item())
    if source.numel() < count:
        raise ShapeError(f"masked_scatter: the mask selects {count} elements but source (shape "
                         f"{tuple(source.shape)}) has only {source.numel()}")
    return index_put(input, positions, source.reshape(-1)[:count])


def fill_diagonal(input, fill_value, wrap=False):
    """input with its main diagonal (every dim's index equal) set to fill_value; the out-of-place twin of
    Tensor.fill_diagonal_. wrap=True continues the diagonal below a tall matrix's square top (NumPy's rule)."""
    shape = tuple(input.shape)
    if input.ndim < 2 or (input.ndim > 2 and len(set(shape)) != 1):
        raise ShapeError(f"fill_diagonal_: the tensor must be 2-D or have all dimensions equal, got shape {shape}")
    xp = array_module(input._data)
    if input.ndim == 2:
        rows, columns = shape
        flat = xp.arange(0, rows * columns if wrap else min(rows, columns) * columns, columns + 1)
        key = (flat // columns, flat % columns)
    else:
        key = (xp.arange(shape[0]),) * input.ndim
    return assign_at(input, key, fill_value)


__all__ = ["Tensor", "argwhere", "fill_diagonal", "index_add", "index_copy", "index_fill", "index_put", "masked_fill",
           "masked_scatter", "nonzero", "scatter", "scatter_add", "scatter_reduce"]
