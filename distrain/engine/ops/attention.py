"""Attention as one fused op: softmax(scale * Q K^T + mask) V, forward and backward in one node.

Recorded from primitives, attention is seven nodes (two matmuls, a scale, a mask, a softmax,
dropout, a transpose) that keep the scores, the probabilities and the dropped probabilities
alive for backward. As one op it saves only the probabilities (and the dropout mask) and its
backward is the closed form, with every product a batched matmul over the leading dims:

    P = softmax(S),  S = scale * Q K^T + mask,  P_d = P * dropout_mask,  O = P_d V
    dV = P_d^T dO,   dP = (dO V^T) * dropout_mask,  dS = P * (dP - rowsum(dP * P))
    dQ = scale * dS K,  dK = scale * dS^T Q,  dmask = dS (summed to the mask's shape)

Masks come in two kinds, as in PyTorch: a bool array (True = may attend) or a float tensor
added to the scores (which may itself require grad). A query row that may attend to nothing
gives zeros in scaled_dot_product_attention (PyTorch's "safe softmax"), and NaN when the
weights are asked for (what nn.MultiheadAttention's need_weights path returns in PyTorch).
Under create_graph the backward is recomputed from primitives (core.reference_grads).
"""
from __future__ import annotations

import math

import numpy

from ...errors import ArgumentError, DTypeError, ShapeError
from ..backend import array_module
from ..random import default_generator
from .core import Tensor, check_same_dtype, grad_state, record, reference_grads, sum_to_shape, wrap


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """softmax(query @ key^T * scale + mask) @ value, as torch.nn.functional.scaled_dot_product_attention.

    Shapes: query (*, L, E), key (*, S, E), value (*, S, Ev) -> (*, L, Ev); the leading dims
    broadcast. attn_mask broadcasts to (*, L, S): bool (True = may attend) or float (added).
    is_causal masks key j > query i (the top-left aligned lower triangle; no attn_mask then).
    scale defaults to 1/sqrt(E). dropout_p is applied to the attention weights (always, as in
    PyTorch: pass 0.0 in evaluation). enable_gqa lets key/value have fewer heads (dim -3) than
    query, each shared by a group of query heads.

    Example::

        >>> q = distrain.randn(2, 4, 8, 16)
        >>> distrain.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).shape
        distrain.Size([2, 4, 8, 16])
    """
    name = "scaled_dot_product_attention"
    for argument, tensor in (("query", query), ("key", key), ("value", value)):
        if not isinstance(tensor, Tensor):
            raise DTypeError(f"{name}: {argument} must be a Tensor, got {type(tensor).__name__}")
        if tensor.ndim < 2:
            raise ShapeError(f"{name}: {argument} must have at least 2 dimensions (..., length, features), "
                             f"got shape {tuple(tensor.shape)}")
        if tensor._data.dtype.kind != "f":
            raise DTypeError(f"{name}: {argument} must be floating point, got {tensor.dtype}; convert with .float()")
    check_same_dtype(name, ("query", "key", "value"), (query, key, value))
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ShapeError(f"{name}: query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                         f"{tuple(value.shape)} must agree: query and key share the last dim (E), key and value "
                         "the second-to-last (S)")
    if not 0.0 <= dropout_p <= 1.0:
        raise ArgumentError(f"{name}: dropout_p must be between 0 and 1, got {dropout_p}")
    if enable_gqa:
        key, value = _repeat_heads(query, key, "key"), _repeat_heads(query, value, "value")
    length, source = query.shape[-2], key.shape[-2]
    if is_causal:
        if attn_mask is not None:
            raise ArgumentError(f"{name}: pass either attn_mask or is_causal=True, not both (is_causal builds the "
                                "lower-triangular mask itself)")
        xp = array_module(query._data)
        attn_mask = xp.tri(length, source, dtype=bool)
    mask = canonical_mask(attn_mask, query, "attn_mask", name)
    if mask is not None:
        _check_broadcasts(name, mask.shape, query.shape[:-2], length, source)
    return attention(query, key, value, mask, dropout_p, scale)[0]


def _repeat_heads(query, tensor, argument):
    """GQA: key/value heads (dim -3) repeated so that each serves query_heads / heads query heads."""
    if query.ndim < 3 or tensor.ndim < 3 or query.shape[-3] % tensor.shape[-3]:
        raise ShapeError(f"scaled_dot_product_attention: enable_gqa needs (..., heads, length, features) inputs "
                         f"whose query heads are a multiple of the {argument} heads, got query {tuple(query.shape)} "
                         f"and {argument} {tuple(tensor.shape)}")
    groups = query.shape[-3] // tensor.shape[-3]
    if groups == 1:
        return tensor
    lead, heads, rest = tuple(tensor.shape[:-3]), tensor.shape[-3], tuple(tensor.shape[-2:])
    expanded = tensor.unsqueeze(-3).expand(*lead, heads, groups, *rest)
    return expanded.reshape(*lead, heads * groups, *rest)


def _check_broadcasts(name, mask_shape, lead, length, source):
    mask_shape = tuple(mask_shape)
    target = tuple(lead) + (length, source)
    padded = (1,) * (len(target) - len(mask_shape)) + mask_shape
    if len(mask_shape) > len(target) or any(m not in (1, t) for m, t in zip(padded, target)):
        raise ShapeError(f"{name}: attn_mask of shape {mask_shape} does not broadcast to the attention scores' "
                         f"shape {target} (..., L={length}, S={source})")


def canonical_mask(mask, like, argument, op_name):
    """A mask as the fused op takes it: None, a bool array (True = may attend) or a float Tensor (added).

    A float array or list becomes a Tensor of `like`'s dtype; a float Tensor must have it.
    """
    if mask is None:
        return None
    data = mask._data if isinstance(mask, Tensor) else array_module(like._data).asarray(mask)
    if data.dtype.kind == "b":
        return data
    if data.dtype.kind != "f":
        raise DTypeError(f"{op_name}: {argument} must be bool (True = may attend) or a float tensor added to the "
                         f"scores, got dtype {data.dtype}")
    if not isinstance(mask, Tensor):
        return wrap(data.astype(like._data.dtype, copy=False))
    if data.dtype != like._data.dtype:
        raise DTypeError(f"{op_name}: a float {argument} must have the query's dtype {like.dtype}, got {mask.dtype}; "
                         f"convert it with .to({like.dtype})")
    return mask


def attention(query, key, value, mask=None, dropout_p=0.0, scale=None, need_weights=False):
    """The fused op behind scaled_dot_product_attention and nn.MultiheadAttention.

    `mask` is what canonical_mask returns. Returns (output, weights): weights are the
    (dropped-out) attention probabilities when need_weights, else None. Without weights a
    fully masked query row gives zeros; with them it gives NaN, as PyTorch's two paths do.
    """
    q, k, v = query._data, key._data, value._data
    xp = array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ xp.swapaxes(k, -1, -2)
    scores *= scale
    float_mask = isinstance(mask, Tensor)
    if mask is not None:
        bias = mask._data if float_mask else _bool_to_bias(xp, mask, scores.dtype)
        if numpy.broadcast_shapes(scores.shape, bias.shape) == scores.shape:
            scores += bias
        else:
            scores = scores + bias
    probs = _softmax_rows(xp, scores, safe=not need_weights)
    dropped, keep = probs, None
    if dropout_p > 0.0:
        keep = _dropout_mask(xp, query, probs.shape, probs.dtype, dropout_p)
        dropped = probs * keep
    out = wrap(dropped @ v)
    weights = wrap(dropped) if need_weights else None
    mask_input = mask if float_mask else None
    if grad_state.enabled and (query._requires_grad or key._requires_grad or value._requires_grad
                               or (float_mask and mask._requires_grad)):
        outputs = (out,) if weights is None else (out, weights)
        record("ScaledDotProductAttention", _attention_backward, (query, key, value, mask_input), outputs,
               saved=(query, key, value, mask_input),
               args=(probs, keep, scale, None if float_mask else mask, not need_weights))
    return out, weights


def _bool_to_bias(xp, mask, dtype):
    return xp.where(mask, xp.asarray(0.0, dtype=dtype), xp.asarray(-math.inf, dtype=dtype))


def _softmax_rows(xp, scores, safe):
    """Softmax over the last axis, in place in `scores`; rows that are all -inf give 0 (safe) or NaN."""
    row_max = scores.max(axis=-1, keepdims=True)
    if safe:  # an all -inf row would compute -inf - -inf = NaN: shift it by a finite number instead
        xp.maximum(row_max, xp.finfo(scores.dtype).min, out=row_max)
    with numpy.errstate(invalid="ignore"):  # NumPy's warning switch; CuPy never warns
        scores -= row_max
        xp.exp(scores, out=scores)
        total = scores.sum(axis=-1, keepdims=True)
        if safe:
            total += total == 0
        scores /= total
    return scores


def _dropout_mask(xp, like, shape, dtype, p):
    """Keep-and-rescale factors (0 or 1/(1-p)) drawn from the device's generator, as ops.dropout draws them."""
    if p >= 1.0:
        return xp.zeros(shape, dtype=dtype)
    keep = default_generator(like.device).uniform(shape, dtype) >= p
    return keep * xp.asarray(1.0 / (1.0 - p), dtype=dtype)


def _attention_backward(node, grads):
    grad_out, grad_weights = grads if node.n_outputs == 2 else (grads, None)
    query, key, value, mask = node.saved_tensors
    probs, keep, scale, bool_mask, safe = node.args
    if grad_state.enabled:  # create_graph: differentiate the primitive definition instead
        def reference(q, k, v, m):
            out, weights = _reference(q, k, v, m, bool_mask, keep, scale, safe)
            total = 0.0
            for result, grad in ((out, grad_out), (weights, grad_weights)):
                if grad is not None:
                    total = total + (result * grad).sum()
            return total

        one = wrap(array_module(probs).asarray(1.0, dtype=probs.dtype))
        return reference_grads(reference, (query, key, value, mask), one)
    q_edge, k_edge, v_edge, mask_edge = node.next_edges
    q, k, v = query._data, key._data, value._data
    xp = array_module(probs)
    dropped = probs if keep is None else probs * keep
    grad_q = grad_k = grad_v = grad_mask = None
    grad_probs = None if grad_weights is None else grad_weights._data
    if grad_out is not None:
        g = grad_out._data
        if v_edge is not None:
            grad_v = _reduced(xp.swapaxes(dropped, -1, -2) @ g, value)
        from_out = g @ xp.swapaxes(v, -1, -2)
        grad_probs = from_out if grad_probs is None else from_out + grad_probs
    if keep is not None:
        grad_probs = grad_probs * keep
    with numpy.errstate(invalid="ignore"):
        grad_scores = grad_probs * probs  # dS = P * (dP - rowsum(dP * P)), written to reuse one buffer
        grad_scores -= probs * grad_scores.sum(axis=-1, keepdims=True)
    if mask_edge is not None:  # the mask's gradient keeps grad_scores: scale a copy for q and k
        grad_mask = _reduced(grad_scores, mask)
        grad_scores = grad_scores * scale
    else:
        grad_scores *= scale
    if q_edge is not None:
        grad_q = _reduced(grad_scores @ k, query)
    if k_edge is not None:
        grad_k = _reduced(xp.swapaxes(grad_scores, -1, -2) @ q, key)
    return grad_q, grad_k, grad_v, grad_mask


def _reduced(array, like):
    """A gradient summed over the leading dims that broadcasting gave it beyond `like`'s shape."""
    return sum_to_shape(wrap(array), like._data.shape)


def _reference(query, key, value, mask, bool_mask, keep, scale, safe):
    """The same attention from differentiable primitives (for create_graph), with the same dropout draw."""
    from .elementwise import where
    from .softmax import softmax

    scores = (query @ key.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask
    if bool_mask is not None:
        scores = where(wrap(bool_mask), scores, -math.inf)
    if safe:  # rows with nothing to attend to: softmax of zeros, then multiplied by zero
        attends = (scores._data != -math.inf).any(axis=-1, keepdims=True)
        scores = where(wrap(attends), scores, 0.0)
        probs = softmax(scores, -1) * wrap(attends.astype(scores._data.dtype))
    else:
        probs = softmax(scores, -1)
    if keep is not None:
        probs = probs * wrap(keep)
    return probs @ value, probs
