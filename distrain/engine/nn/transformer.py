"""TransformerEncoderLayer and TransformerEncoder with PyTorch's structure and parameter names.

A layer is self-attention then a two-layer feed-forward block, each added back to its input
(residual) and normalised, after the sum (post-norm, PyTorch's default) or before the block
(norm_first). The submodule names (self_attn, linear1, linear2, norm1, norm2, dropout,
dropout1, dropout2) are torch's, so a torch state_dict loads. distrain never builds nested
tensors: `enable_nested_tensor` is accepted and changes nothing, and padded positions get
computed outputs (PyTorch's nested fast path, in evaluation, returns zeros there).
"""
from __future__ import annotations

import copy

from ...errors import ArgumentError
from ..ops.elementwise import gelu, relu
from .activation import Dropout
from .attention import MultiheadAttention
from .containers import ModuleList
from .linear import Linear
from .module import Module
from .normalization import LayerNorm

ACTIVATIONS = {"relu": relu, "gelu": gelu}


class TransformerEncoderLayer(Module):
    """Self-attention and feed-forward, each with residual, dropout and LayerNorm (torch.nn.TransformerEncoderLayer).

    Args: d_model, nhead, dim_feedforward=2048, dropout=0.1, activation ("relu", "gelu" or a
    callable such as nn.GELU()), layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True.

    forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False): masks as
    MultiheadAttention's attn_mask and key_padding_mask. Shape: src (S, N, d_model), or
    (N, S, d_model) with batch_first, or unbatched (S, d_model); the output has src's shape.

    Example::

        >>> layer = distrain.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
        >>> layer(distrain.randn(2, 10, 32)).shape
        distrain.Size([2, 10, 32])
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation=relu, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            **factory)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            if activation not in ACTIVATIONS:
                raise ArgumentError(f"TransformerEncoderLayer: activation should be 'relu' or 'gelu' (or a callable), "
                                    f"not {activation!r}")
            activation = ACTIVATIONS[activation]
        elif not callable(activation):
            raise ArgumentError(f"TransformerEncoderLayer: activation must be 'relu', 'gelu' or a callable, got "
                                f"{type(activation).__name__}")
        self.activation = activation

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._self_attention_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._feed_forward_block(self.norm2(x))
        else:
            x = self.norm1(x + self._self_attention_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._feed_forward_block(x))
        return x

    def _self_attention_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _feed_forward_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoder(Module):
    """`num_layers` copies of `encoder_layer` (deep copies, as in PyTorch), then an optional `norm`.

    forward(src, mask=None, src_key_padding_mask=None, is_causal=None) runs every layer with the
    same masks. enable_nested_tensor and mask_check are accepted for PyTorch's signature; distrain
    has no nested tensors (see the module docstring).

    Example::

        >>> layer = distrain.nn.TransformerEncoderLayer(32, 4, dim_feedforward=64)
        >>> encoder = distrain.nn.TransformerEncoder(layer, num_layers=2, norm=distrain.nn.LayerNorm(32))
        >>> encoder(distrain.randn(10, 2, 32)).shape
        distrain.Size([10, 2, 32])
    """

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        if not isinstance(encoder_layer, Module):
            raise ArgumentError(f"TransformerEncoder: encoder_layer must be a Module (e.g. TransformerEncoderLayer), "
                                f"got {type(encoder_layer).__name__}")
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.mask_check = mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                           is_causal=bool(is_causal))
        if self.norm is not None:
            output = self.norm(output)
        return output
