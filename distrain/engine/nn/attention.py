"""MultiheadAttention with PyTorch's parameters, masks and outputs (the attention itself in ops/attention.py).

The parameter names are torch's (in_proj_weight/in_proj_bias, or q_proj_weight/k_proj_weight/
v_proj_weight when kdim or vdim differ from embed_dim, and out_proj), so a state_dict saved
by PyTorch loads. Inside, every input is brought to (N, length, E) and split into heads
(N, H, length, E/H), so that attention is one fused op of batched matmuls over N*H.
Self-attention (query is key is value) projects q, k and v with one GEMM of in_proj_weight.
"""
from __future__ import annotations

import math

from ...errors import ArgumentError, DTypeError, ShapeError
from .. import factories
from ..backend import array_module
from ..ops.attention import attention, canonical_mask
from ..ops.core import wrap
from ..ops.linalg import linear
from ..ops.shape import unbind
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter


class MultiheadAttention(Module):
    """Attention over `num_heads` heads of embed_dim / num_heads features each (torch.nn.MultiheadAttention).

    Args: embed_dim, num_heads; dropout (on the attention weights, in training); bias (of the
    input and output projections); kdim, vdim (the key's and value's features, default
    embed_dim); batch_first (inputs (N, L, E) instead of (L, N, E)). add_bias_kv and
    add_zero_attn are accepted only as False.

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None).

    Shape: query (L, N, E) (or (N, L, E) with batch_first, or unbatched (L, E)); key (S, N, kdim);
    value (S, N, vdim); key_padding_mask (N, S), True (or -inf) where a key is padding;
    attn_mask (L, S) or (N*num_heads, L, S), True (or -inf) where attending is NOT allowed
    (the opposite of scaled_dot_product_attention's bool mask, as in PyTorch). weights are
    (N, L, S) averaged over heads, or (N, num_heads, L, S) with average_attn_weights=False.
    is_causal is a hint that attn_mask is causal; attn_mask must still be given, as in PyTorch.

    Example::

        >>> attention = distrain.nn.MultiheadAttention(16, 4, batch_first=True)
        >>> x = distrain.randn(2, 5, 16)
        >>> output, weights = attention(x, x, x)
        >>> output.shape, weights.shape
        (distrain.Size([2, 5, 16]), distrain.Size([2, 5, 5]))
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ArgumentError(f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of "
                                f"num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise ArgumentError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported; leave them "
                                "False (append the extra key/value rows to key and value yourself)")
        self.embed_dim = embed_dim
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.add_zero_attn = False
        self.bias_k = self.bias_v = None

        def parameter(*shape):
            return Parameter(factories.empty(*shape, device=device, dtype=dtype))

        if self._qkv_same_embed_dim:
            self.in_proj_weight = parameter(3 * embed_dim, embed_dim)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = parameter(embed_dim, embed_dim)
            self.k_proj_weight = parameter(embed_dim, self.kdim)
            self.v_proj_weight = parameter(embed_dim, self.vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = parameter(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        """PyTorch's initialisation: xavier-uniform projections, zero biases, out_proj's weight as Linear's."""
        for weight in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if weight is not None:
                init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        self_attention, key_is_value = query is key and key is value, key is value
        batched = self._check_inputs(query, key, value)
        if is_causal and attn_mask is None:
            raise ArgumentError("MultiheadAttention: is_causal=True is a hint that attn_mask is causal; pass the "
                                "causal attn_mask too (PyTorch requires it as well)")
        if not batched:  # (length, features) -> (1, length, features)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:  # internally everything is (N, length, features): views
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if self_attention:  # one input, so that _project can use one GEMM
            key = value = query
        elif key_is_value:
            value = key
        batch, length, source = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = self._project(query, key, value)
        mask = self._merged_mask(attn_mask, key_padding_mask, query, batched, length, source)
        output, weights = attention(q, k, v, mask, self.dropout if self.training else 0.0, None, need_weights)
        output = linear(output.transpose(1, 2).reshape(batch, length, self.embed_dim), self.out_proj.weight,
                        self.out_proj.bias)
        if not batched:
            output = output.squeeze(0)
        elif not self.batch_first:
            output = output.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        return output, weights

    def _check_inputs(self, query, key, value):
        """True for batched (3-D) inputs; raises naming the argument for anything else."""
        batched = query.ndim == 3
        if query.ndim not in (2, 3):
            raise ShapeError(f"MultiheadAttention: query must be 2-D (L, E) or 3-D (batched), got shape "
                             f"{tuple(query.shape)}")
        for name, tensor, features in (("query", query, self.embed_dim), ("key", key, self.kdim),
                                       ("value", value, self.vdim)):
            if tensor.ndim != query.ndim:
                raise ShapeError(f"MultiheadAttention: query, key and value must all be batched (3-D) or all "
                                 f"unbatched (2-D), got shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                                 f"{tuple(value.shape)}")
            if tensor.shape[-1] != features:
                raise ShapeError(f"MultiheadAttention: {name} must have {features} features (its last dim), got "
                                 f"shape {tuple(tensor.shape)}")
            if tensor._data.dtype.kind != "f":
                raise DTypeError(f"MultiheadAttention: {name} must be floating point, got {tensor.dtype}")
        batch_dim = 0 if self.batch_first else 1
        if key.shape[:-1] != value.shape[:-1] or (batched and key.shape[batch_dim] != query.shape[batch_dim]):
            raise ShapeError(f"MultiheadAttention: key {tuple(key.shape)} and value {tuple(value.shape)} must have "
                             f"the same length and batch, and the batch of query {tuple(query.shape)}")
        return batched

    def _project(self, query, key, value):
        """q, k, v as (N, H, length, head_dim), with as few GEMMs as the inputs' identity allows."""
        embed, bias = self.embed_dim, self.in_proj_bias
        biases = (None, None, None) if bias is None else (bias[:embed], bias[embed:2 * embed], bias[2 * embed:])
        if self._qkv_same_embed_dim and query is key and key is value:
            batch, length = query.shape[0], query.shape[1]
            packed = linear(query, self.in_proj_weight, bias).reshape(batch, length, 3, self.num_heads, self.head_dim)
            return unbind(packed.permute(2, 0, 3, 1, 4), 0)
        if self._qkv_same_embed_dim:
            weights = (self.in_proj_weight[:embed], self.in_proj_weight[embed:2 * embed],
                       self.in_proj_weight[2 * embed:])
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        return tuple(self._heads(linear(tensor, weight, b))
                     for tensor, weight, b in zip((query, key, value), weights, biases))

    def _heads(self, tensor):
        batch, length = tensor.shape[0], tensor.shape[1]
        return tensor.reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def _merged_mask(self, attn_mask, key_padding_mask, query, batched, length, source):
        """attn_mask and key_padding_mask as one mask of (N or 1, H or 1, L or 1, S) for the fused op.

        PyTorch's bool masks here say where attending is NOT allowed; the fused op's bool mask
        says where it is, so bool masks are inverted. Two bool masks merge with `and`; if either
        is float, both become additive (True -> -inf) and are summed.
        """
        masks = []
        batch = query.shape[0]
        if attn_mask is not None:
            mask = canonical_mask(attn_mask, query, "attn_mask", "MultiheadAttention")
            if tuple(mask.shape) == (length, source):
                pass
            elif tuple(mask.shape) == (batch * self.num_heads, length, source):
                mask = mask.reshape(batch, self.num_heads, length, source)
            else:
                raise ShapeError(f"MultiheadAttention: attn_mask must have shape (L, S) = {(length, source)} or "
                                 f"(N*num_heads, L, S) = {(batch * self.num_heads, length, source)}, got "
                                 f"{tuple(mask.shape)}")
            masks.append(mask)
        if key_padding_mask is not None:
            mask = canonical_mask(key_padding_mask, query, "key_padding_mask", "MultiheadAttention")
            expected = (batch, source) if batched else (source,)
            if tuple(mask.shape) != expected:
                raise ShapeError(f"MultiheadAttention: key_padding_mask must have shape {'(N, S)' if batched else '(S,)'}"
                                 f" = {expected}, got {tuple(mask.shape)}")
            masks.append(mask.reshape(batch, 1, 1, source))
        if not masks:
            return None
        if all(not hasattr(mask, "_data") for mask in masks):  # bool arrays: keep where no mask forbids
            keep = ~masks[0]
            for mask in masks[1:]:
                keep = keep & ~mask
            return keep
        total = None
        for mask in masks:
            if not hasattr(mask, "_data"):  # a bool mask beside a float one: True -> -inf, False -> 0
                mask = wrap(array_module(mask).where(mask, -math.inf, 0.0).astype(query._data.dtype))
            total = mask if total is None else total + mask
        return total

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, " \
               f"batch_first={self.batch_first}"
