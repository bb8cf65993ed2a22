"""dropout and embedding: the two layer ops that are lookups or masks rather than arithmetic."""
from __future__ import annotations

from ...errors import ArgumentError, DTypeError, ShapeError
from ..autograd import grad_mode
from ..backend import array_module
from ..random import default_generator
from .core import Tensor, wrap
from .value_checks import require_range


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when not training).

    The mask comes from distrain's generator for the input's device, so `manual_seed`
    makes it reproducible.
    """
    return masked_dropout(input, p, training, inplace, tuple(input.shape))


def masked_dropout(input, p, training, inplace, mask_shape):
    """Dropout with one draw per entry of `mask_shape` (input's shape, or (N, C, 1, ...) for whole channels),
    broadcast over the input; kept entries are scaled by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    data = input._data
    xp = array_module(data)
    dtype = data.dtype if data.dtype.kind == "f" else xp.dtype("float32")
    if p == 1.0:
        mask = xp.zeros(mask_shape, dtype=dtype)
    else:
        mask = default_generator(input.device).uniform(mask_shape, dtype)
        mask = (mask >= p).astype(dtype)
        mask *= 1.0 / (1.0 - p)
    if inplace:
        return input.mul_(wrap(mask))
    return input * wrap(mask)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of `weight` picked by the integer indices in `input`: output shape (*input.shape, dim)."""
    from .indexing import getitem

    indices = input._data if isinstance(input, Tensor) else array_module(weight._data).asarray(input)
    if indices.dtype.kind not in "iu":
        raise DTypeError(f"embedding: indices must be integers, got dtype {indices.dtype}")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {tuple(weight.shape)}")
    rows = weight.shape[0]
    require_range(indices, 0, rows, ShapeError, f"embedding: indices must be in [0, {rows}) for a table of {rows} "
                  "rows, got range [{lowest}, {highest}]")
    if sparse or scale_grad_by_freq:
        raise NotImplementedError("embedding: sparse gradients and scale_grad_by_freq are not supported; "
                                  "use the defaults (dense gradients)")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += rows
    if max_norm is not None:
        _renormalize_rows(weight, indices, max_norm, norm_type)
    out = getitem(weight, wrap(indices))
    if padding_idx is not None and out._requires_grad:
        keep = (indices != padding_idx)[..., None].astype(weight._data.dtype)
        out.register_hook(lambda grad: grad * wrap(keep))  # the padding row gets no gradient
    return out


def _renormalize_rows(weight, indices, max_norm, norm_type):
    """Scale, in place, the looked-up rows whose norm exceeds max_norm (PyTorch's embedding_renorm_)."""
    xp = array_module(weight._data)
    with grad_mode.no_grad():
        unique = xp.unique(indices.reshape(-1))
        rows = weight._data[unique]
        norms = (xp.abs(rows) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
        scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(rows.dtype)
        weight._data[unique] = rows * scale[:, None]
        weight._version_counter[0] += 1
