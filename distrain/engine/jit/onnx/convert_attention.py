"""Attention decomposed into ONNX operators: scaled_dot_product_attention and nn.MultiheadAttention.

softmax(Q K^T * scale + mask) V, as distrain's fused op computes it (ops/attention.py):
MatMul, Mul, Add, Softmax, MatMul. Bool masks become additive ones (True -> 0 where
attending is allowed, -inf elsewhere), which gives the same scores. Heads are split with
Reshape(0, 0, heads, head_dim), so batch and sequence lengths stay dynamic.
TransformerEncoderLayer needs nothing here: its forward is recorded op by op (recorder.py),
through this layer, Linear, LayerNorm and Dropout.

A query row that may attend to nothing gives NaN in ONNX (distrain's scaled_dot_product_attention
gives zeros there, PyTorch's "safe softmax").
"""
from __future__ import annotations

import math

import numpy

from ...nn import attention as attention_layers
from ...ops import attention as attention_ops
from ...tensor import Tensor
from .convert_reduce import softmax_along
from .export_errors import OnnxExportError
from .registry import converts, converts_layer


def _additive_mask(builder, mask, dtype, allowed_when_true):
    """A mask as a value added to the scores: float masks as they are, bool masks as 0 / -inf."""
    if isinstance(mask, Tensor) and mask._data.dtype.kind == "f":
        return builder.value(mask)
    array = numpy.asarray(mask.__array__() if isinstance(mask, Tensor) else mask)  # a CuPy mask too
    zero, minus_infinity = numpy.asarray(0.0, dtype=dtype), numpy.asarray(-numpy.inf, dtype=dtype)
    if isinstance(mask, Tensor) and builder.is_dynamic(mask):
        keep, drop = builder.constant(zero), builder.constant(minus_infinity)
        if not allowed_when_true:
            keep, drop = drop, keep
        return builder.node("Where", [builder.value(mask), keep, drop])
    allowed = array if allowed_when_true else ~array
    return builder.constant(numpy.where(allowed, zero, minus_infinity))


def attend(builder, q, k, v, scale, masks, ndim, dtype):
    """softmax(q k^T * scale + sum(masks)) v for values of rank `ndim` (..., length, features)."""
    permutation = list(range(ndim))
    permutation[-1], permutation[-2] = permutation[-2], permutation[-1]
    scores = builder.node("MatMul", [q, builder.node("Transpose", [k], perm=permutation)])
    scores = builder.node("Mul", [scores, builder.constant(numpy.asarray(scale, dtype=dtype))])
    for mask in masks:
        scores = builder.node("Add", [scores, mask])
    weights = softmax_along(builder, "Softmax", scores, ndim - 1, ndim)
    return builder.node("MatMul", [weights, v]), weights


@converts(attention_ops.scaled_dot_product_attention)
def scaled_dot_product_attention(builder, out, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    if dropout_p:
        raise OnnxExportError(f"{builder.doing}: dropout_p={dropout_p} drops attention weights at every call (also in "
                              f"evaluation); export with dropout_p=0.0")
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        raise OnnxExportError(f"{builder.doing}: enable_gqa with fewer key/value heads is not exported; repeat the "
                              f"key and value heads (repeat_interleave on dim -3) before the call")
    dtype = query._data.dtype
    length, source = query.shape[-2], key.shape[-2]
    masks = []
    if is_causal:
        masks.append(_additive_mask(builder, numpy.tri(length, source, dtype=bool), dtype, True))
    elif attn_mask is not None:
        masks.append(_additive_mask(builder, attn_mask, dtype, True))
    output, _ = attend(builder, builder.value(query), builder.value(key), builder.value(value),
                       1.0 / math.sqrt(query.shape[-1]) if scale is None else scale, masks, query.ndim, dtype)
    return output


def _projection(builder, x, weight, bias, path, name):
    """x W^T + b with W^T and b as initializers (slices of the packed in-projection)."""
    transposed = builder.constant(numpy.ascontiguousarray(weight.T), f"{path}.{name}_weight_T")
    product = builder.node("MatMul", [x, transposed])
    return product if bias is None else builder.node("Add", [product, builder.constant(bias, f"{path}.{name}_bias")])


@converts_layer(attention_layers.MultiheadAttention, differs_in_training=lambda m: m.dropout > 0)
def multihead_attention(builder, out, module, query, key, value, key_padding_mask=None, need_weights=True,
                        attn_mask=None, average_attn_weights=True, is_causal=False):
    embed, heads, head_dim = module.embed_dim, module.num_heads, module.head_dim
    dtype = query._data.dtype
    path = builder.scope.strip("/")
    batched = query.ndim == 3

    def batch_major(tensor):
        name = builder.value(tensor)
        if not batched:
            return builder.unsqueeze(name, [0])
        return name if module.batch_first else builder.node("Transpose", [name], perm=[1, 0, 2])

    if module._qkv_same_embed_dim:
        packed = numpy.asarray(module.in_proj_weight.__array__())
        weights = (packed[:embed], packed[embed:2 * embed], packed[2 * embed:])
    else:
        weights = tuple(numpy.asarray(w.__array__()) for w in (module.q_proj_weight, module.k_proj_weight,
                                                               module.v_proj_weight))
    biases = (None,) * 3 if module.in_proj_bias is None else numpy.split(
        numpy.asarray(module.in_proj_bias.__array__()), 3)
    projected = [
        builder.node("Transpose", [builder.node("Reshape", [
            _projection(builder, batch_major(tensor), weight, bias, path, name),
            builder.ints([0, 0, heads, head_dim])])], perm=[0, 2, 1, 3])
        for tensor, weight, bias, name in zip((query, key, value), weights, biases, ("q", "k", "v"))]
    sequence_axis = 1 if batched and module.batch_first else 0
    length, source = query.shape[sequence_axis], key.shape[sequence_axis]
    masks = []
    if attn_mask is not None:
        mask = _additive_mask(builder, attn_mask, dtype, False)
        if attn_mask.ndim == 3:  # (N * heads, L, S) -> (N, heads, L, S)
            mask = builder.node("Reshape", [mask, builder.ints([-1, heads, length, source])])
        masks.append(mask)
    if key_padding_mask is not None:
        masks.append(builder.node("Reshape", [_additive_mask(builder, key_padding_mask, dtype, False),
                                              builder.ints([-1, 1, 1, source])]))
    attended, probabilities = attend(builder, *projected, 1.0 / math.sqrt(head_dim), masks, 4, dtype)
    merged = builder.node("Reshape", [builder.node("Transpose", [attended], perm=[0, 2, 1, 3]),
                                      builder.ints([0, 0, embed])])
    out_bias = None if module.out_proj.bias is None else numpy.asarray(module.out_proj.bias.__array__())
    output = _projection(builder, merged, numpy.asarray(module.out_proj.weight.__array__()), out_bias, path, "out")
    if not batched:
        output = builder.squeeze(output, [0])
    elif not module.batch_first:
        output = builder.node("Transpose", [output], perm=[1, 0, 2])
    if not need_weights:
        return output, None
    if average_attn_weights:
        probabilities = builder.reduce("ReduceMean", probabilities, [1], False)
    if not batched:
        probabilities = builder.squeeze(probabilities, [0])
    return output, probabilities
