"""F.scaled_dot_product_attention and nn.MultiheadAttention against torch, forward and backward.

Masks, scales, causal attention, broadcasting and fully masked rows are compared with torch's
outputs and gradients (inputs, float masks, parameters); dropout, which draws different random
numbers in the two libraries, is checked by its statistics and by a backward that must use the
same draw as the forward.
"""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import (FLOAT_DTYPES, check_finite_differences, check_op_against_torch, check_second_order_against_torch,
                      to_distrain, to_numpy, to_torch)
from .module_oracle import check_module_against_torch, twins

RNG = np.random.default_rng(0)


def _causal_mask(length, source):
    return np.tril(np.ones((length, source), dtype=bool))


def _half_masked(shape, seed=1):
    """A bool mask with some False entries but at least one True per row (no fully masked rows)."""
    mask = np.random.default_rng(seed).random(shape) > 0.4
    mask[..., 0] = True
    return mask


# id -> (query shape, key shape, value shape, mask array or None, kwargs)
SDPA_CASES = {
    "plain": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), None, {}),
    "unbatched": ((4, 5), (6, 5), (6, 5), None, {}),
    "broadcast_batch": ((2, 3, 4, 5), (1, 3, 6, 5), (1, 3, 6, 5), None, {}),
    "scale": ((2, 4, 5), (2, 6, 5), (2, 6, 5), None, {"scale": 0.3}),
    "causal_square": ((2, 2, 5, 4), (2, 2, 5, 4), (2, 2, 5, 4), None, {"is_causal": True}),
    "causal_rectangular": ((2, 4, 3), (2, 6, 3), (2, 6, 3), None, {"is_causal": True}),
    "bool_mask": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), _half_masked((4, 6)), {}),
    "bool_mask_broadcast": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), _half_masked((2, 1, 4, 6)), {}),
    "float_mask": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), RNG.standard_normal((4, 6)), {}),
    "float_mask_per_batch": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), RNG.standard_normal((2, 3, 4, 6)), {}),
    "fully_masked_row": ((2, 4, 5), (2, 6, 5), (2, 6, 5), np.vstack([_half_masked((3, 6)), np.zeros((1, 6), bool)]),
                         {}),
    "gqa": ((2, 4, 3, 5), (2, 2, 6, 5), (2, 2, 6, 5), None, {"enable_gqa": True}),
}


def _sdpa(lib, kwargs):
    def run(q, k, v, mask=None):
        return lib.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kwargs)

    return run


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_matches_torch(case, dtype, device):
    q_shape, k_shape, v_shape, mask, kwargs = SDPA_CASES[case]
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(shape) for shape in (q_shape, k_shape, v_shape)]
    if mask is not None:
        arrays.append(mask)  # a float mask becomes a leaf too: its gradient is compared
    check_op_against_torch(_sdpa(distrain, kwargs), _sdpa(torch, kwargs), arrays, dtype, device)


def test_sdpa_finite_differences_and_second_order(device):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(shape) for shape in ((2, 3, 4), (2, 5, 4), (2, 5, 3), (3, 5))]
    check_finite_differences(_sdpa(distrain, {}), arrays, device)
    check_second_order_against_torch(_sdpa(distrain, {}), _sdpa(torch, {}), arrays, device=device)
    causal = [rng.standard_normal(shape) for shape in ((2, 4, 3), (2, 4, 3), (2, 4, 3))]
    check_second_order_against_torch(_sdpa(distrain, {"is_causal": True}), _sdpa(torch, {"is_causal": True}),
                                     causal, device=device)


def test_sdpa_dropout_statistics_and_backward_use_the_same_draw(device):
    # q = k = 0: every weight is 1/S; v = I: the output row IS the dropped weight row, revealing the draw
    length, source, p = 64, 50, 0.3
    q = distrain.zeros(8, length, 4, device=device, requires_grad=True)
    v = distrain.tensor(np.tile(np.eye(source, dtype=np.float32), (8, 1, 1)), device=device, requires_grad=True)
    distrain.manual_seed(5)
    out = F.scaled_dot_product_attention(q, q[:, :source], v, dropout_p=p)
    dropped = to_numpy(out)
    kept = dropped != 0
    assert abs(1 - kept.mean() - p) < 0.02, f"dropped fraction {1 - kept.mean():.3f}, expected {p}"
    np.testing.assert_allclose(dropped[kept], 1 / ((1 - p) * source), rtol=1e-6)
    upstream = np.random.default_rng(6).standard_normal(dropped.shape).astype(np.float32)
    out.backward(to_distrain(upstream, device))
    # dV = P_d^T dO with the same P_d the forward used
    np.testing.assert_allclose(to_numpy(v.grad), np.swapaxes(dropped, 1, 2) @ upstream, rtol=1e-5, atol=1e-6)
    distrain.manual_seed(5)  # the draw comes from distrain's generator: reproducible
    again = F.scaled_dot_product_attention(q, q[:, :source], v, dropout_p=p)
    np.testing.assert_array_equal(to_numpy(again), dropped)


@pytest.mark.parametrize("call, message", [
    (lambda: F.scaled_dot_product_attention(distrain.randn(2, 3, 4), distrain.randn(2, 5, 6), distrain.randn(2, 5, 6)),
     "share the last dim"),
    (lambda: F.scaled_dot_product_attention(distrain.randn(2, 3, 4), distrain.randn(2, 5, 4), distrain.randn(2, 6, 4)),
     "second-to-last"),
    (lambda: F.scaled_dot_product_attention(distrain.randn(3, 4), distrain.randn(5, 4), distrain.randn(5, 4),
                                            attn_mask=distrain.ones(3, 5).bool(), is_causal=True), "not both"),
    (lambda: F.scaled_dot_product_attention(distrain.randn(3, 4), distrain.randn(5, 4), distrain.randn(5, 4),
                                            attn_mask=distrain.ones(4, 5).bool()), "attn_mask of shape (4, 5)"),
    (lambda: F.scaled_dot_product_attention(distrain.randn(3, 4), distrain.randn(5, 4), distrain.randn(5, 4),
                                            attn_mask=distrain.ones(3, 5).long()), "attn_mask must be bool"),
    (lambda: F.scaled_dot_product_attention(distrain.randn(3, 4), distrain.randn(5, 4).double(), distrain.randn(5, 4)),
     "same dtype"),
])
def test_sdpa_bad_input_is_named(call, message):
    with pytest.raises(distrain.DistrainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


# --- MultiheadAttention ---------------------------------------------------------------------------------

class Call:
    """A module called with fixed keyword arguments (masks, flags), for the module oracle.

    `self_attention`: one input used as query, key and value (the path with one projection GEMM).
    """

    def __init__(self, module, self_attention=False, **kwargs):
        self.module, self.self_attention, self.kwargs = module, self_attention, kwargs

    def __call__(self, *inputs):
        if self.self_attention:
            inputs = inputs * 3
        output, weights = self.module(*inputs, **self.kwargs)
        return output if weights is None else (output, weights)  # need_weights=False: (output, None)

    def __getattr__(self, name):
        return getattr(self.module, name)


def _mask_pair(array, device):
    if array is None:
        return None, None
    return to_distrain(array, device), to_torch(array)


# id -> (constructor kwargs, (L, N, S), self_attention, forward kwargs as numpy arrays or flags)
MHA_CASES = {
    "self": ({}, (5, 2, 5), True, {}),
    "self_batch_first": ({"batch_first": True}, (5, 2, 5), True, {}),
    "cross": ({}, (4, 3, 6), False, {}),
    "kdim_vdim": ({"kdim": 6, "vdim": 10, "batch_first": True}, (4, 2, 5), False, {}),
    "no_bias": ({"bias": False}, (4, 2, 5), True, {}),
    "unbatched": ({}, (4, None, 4), True, {}),
    "heads_unaveraged": ({}, (4, 2, 6), False, {"average_attn_weights": False}),
    "no_weights": ({}, (4, 2, 4), True, {"need_weights": False}),
    "key_padding_bool": ({"batch_first": True}, (4, 2, 6), False,
                         {"key_padding_mask": ~_half_masked((2, 6), seed=3)}),
    "key_padding_float": ({}, (4, 2, 6), False, {"key_padding_mask": RNG.standard_normal((2, 6))}),
    "attn_mask_bool_causal": ({}, (5, 2, 5), True, {"attn_mask": ~_causal_mask(5, 5), "is_causal": True}),
    "attn_mask_float_3d": ({"batch_first": True}, (4, 2, 6), False,
                           {"attn_mask": RNG.standard_normal((2 * 2, 4, 6))}),
    "both_masks_bool_no_weights": ({}, (4, 2, 6), False, {"attn_mask": ~_half_masked((4, 6), seed=4),
                                                          "key_padding_mask": ~_half_masked((2, 6), seed=5),
                                                          "need_weights": False}),
    "unbatched_masks": ({}, (4, None, 6), False, {"attn_mask": ~_half_masked((4, 6), seed=6),
                                                  "key_padding_mask": ~_half_masked((6,), seed=7)}),
}


def _mha_inputs(constructor, sizes, self_attention, seed=0):
    embed = 8
    length, batch, source = sizes
    batch_first = constructor.get("batch_first", False)

    def shape(steps, features):
        if batch is None:
            return (steps, features)
        return (batch, steps, features) if batch_first else (steps, batch, features)

    rng = np.random.default_rng(seed)
    if self_attention:
        return [rng.standard_normal(shape(length, embed))]
    return [rng.standard_normal(shape(length, embed)), rng.standard_normal(shape(source, constructor.get("kdim", embed))),
            rng.standard_normal(shape(source, constructor.get("vdim", embed)))]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_matches_torch(case, dtype, device):
    constructor, sizes, self_attention, forward = MHA_CASES[case]
    d_layer, t_layer = twins(nn.MultiheadAttention(8, 2, **constructor), torch.nn.MultiheadAttention(8, 2, **constructor),
                             dtype, device)
    if t_layer.in_proj_bias is not None:  # torch initialises biases to zero: make them count
        with torch.no_grad():
            t_layer.in_proj_bias.uniform_(-0.5, 0.5)
            t_layer.out_proj.bias.uniform_(-0.5, 0.5)
        d_layer, t_layer = twins(d_layer, t_layer, dtype, device)
    d_kwargs, t_kwargs = {}, {}
    for name, value in forward.items():
        if isinstance(value, np.ndarray):
            value = value.astype(dtype) if value.dtype.kind == "f" else value
            d_kwargs[name], t_kwargs[name] = _mask_pair(value, device)
        else:
            d_kwargs[name] = t_kwargs[name] = value
    for mode in ("train", "eval"):  # dropout 0: both modes compute the same thing, through torch's two paths
        getattr(d_layer, mode)()
        getattr(t_layer, mode)()
        d_layer.zero_grad()
        t_layer.zero_grad()
        check_module_against_torch(Call(d_layer, self_attention, **d_kwargs), Call(t_layer, self_attention, **t_kwargs),
                                   _mha_inputs(constructor, sizes, self_attention), dtype, device)


def test_multihead_attention_fully_masked_row_is_nan_with_weights_zero_without(device):
    d_layer, t_layer = twins(nn.MultiheadAttention(4, 2), torch.nn.MultiheadAttention(4, 2), np.float32, device)
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    padding = np.zeros((2, 3), dtype=bool)
    padding[1] = True  # the second sequence is all padding
    for need_weights in (True, False):
        d_out, d_weights = d_layer(to_distrain(x, device), to_distrain(x, device), to_distrain(x, device),
                                   key_padding_mask=to_distrain(padding, device), need_weights=need_weights)
        t_out, t_weights = t_layer(to_torch(x), to_torch(x), to_torch(x), key_padding_mask=to_torch(padding),
                                   need_weights=need_weights)
        np.testing.assert_allclose(to_numpy(d_out), to_numpy(t_out), rtol=1e-5, atol=1e-6, equal_nan=True)
        assert np.isnan(to_numpy(d_out)[:, 1]).all() == need_weights
        assert (d_weights is None) == (t_weights is None) == (not need_weights)


def test_multihead_attention_dropout_in_training_only(device):
    layer = nn.MultiheadAttention(8, 2, dropout=0.25, batch_first=True).to(device)
    x = distrain.randn(4, 40, 8, device=device)
    _, weights = layer(x, x, x, average_attn_weights=False)
    kept = to_numpy(weights) != 0
    assert abs(1 - kept.mean() - 0.25) < 0.02
    layer.eval()
    _, weights = layer(x, x, x, average_attn_weights=False)
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda: nn.MultiheadAttention(10, 3), "multiple of num_heads"),
    (lambda: nn.MultiheadAttention(8, 2, add_bias_kv=True), "add_bias_kv"),
])
def test_multihead_attention_bad_construction_is_named(make, message):
    with pytest.raises(distrain.DistrainError, match=message):
        make()


@pytest.mark.parametrize("kwargs, message", [
    ({"attn_mask": distrain.ones(3, 3).bool()}, r"attn_mask must have shape \(L, S\) = \(4, 5\)"),
    ({"key_padding_mask": distrain.ones(2, 4).bool()}, r"key_padding_mask must have shape \(N, S\) = \(2, 5\)"),
    ({"is_causal": True}, "pass the causal attn_mask"),
])
def test_multihead_attention_bad_masks_are_named(kwargs, message):
    layer = nn.MultiheadAttention(8, 2)
    query, key = distrain.randn(4, 2, 8), distrain.randn(5, 2, 8)
    with pytest.raises(distrain.DistrainError, match=message):
        layer(query, key, key, **kwargs)
    with pytest.raises((RuntimeError, AssertionError)):  # torch refuses the same calls
        torch.nn.MultiheadAttention(8, 2)(torch.randn(4, 2, 8), torch.randn(5, 2, 8), torch.randn(5, 2, 8),
                                          **{k: to_torch(to_numpy(v)) if hasattr(v, "shape") else v
                                             for k, v in kwargs.items()})


def test_multihead_attention_bad_feature_count_is_named():
    with pytest.raises(distrain.ShapeError, match=r"key must have 8 features.*\(5, 2, 6\)"):
        nn.MultiheadAttention(8, 2)(distrain.randn(4, 2, 8), distrain.randn(5, 2, 6), distrain.randn(5, 2, 6))
