"""TransformerEncoderLayer and TransformerEncoder against torch: forward, backward, parameters, masks.

Each distrain module gets torch's state_dict (torch's parameter names), runs the same input
with the same masks, and must match torch's output, the input's gradient and every parameter's
gradient, with dropout 0 in training mode and with dropout on in evaluation mode.
"""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn

from ..oracle import to_distrain, to_numpy, to_torch
from .module_oracle import check_module_against_torch, twins

D_MODEL, HEADS, FEEDFORWARD = 8, 2, 16


def _padding(batch, length, seed):
    mask = np.random.default_rng(seed).random((batch, length)) > 0.6
    mask[:, 0] = False  # every sequence keeps a key
    return mask


# id -> (constructor kwargs, forward kwargs as numpy arrays)
LAYER_CASES = {
    "post_norm_relu": ({}, {}),
    "batch_first_gelu": ({"batch_first": True, "activation": "gelu"}, {}),
    "norm_first": ({"norm_first": True, "layer_norm_eps": 1e-3}, {}),
    "no_bias": ({"bias": False}, {}),
    "callable_activation": ({"activation": "module_gelu"}, {}),
    "causal_and_padding": ({"batch_first": True}, {"src_mask": ~np.tril(np.ones((5, 5), dtype=bool)),
                                                   "src_key_padding_mask": _padding(3, 5, seed=1)}),
    "float_mask": ({}, {"src_mask": np.random.default_rng(2).standard_normal((5, 5))}),
}


def _activation(lib, kwargs):
    kwargs = dict(kwargs)
    if kwargs.get("activation") == "module_gelu":
        kwargs["activation"] = lib.nn.GELU(approximate="tanh")
    return kwargs


class Call:
    """A module called with fixed keyword arguments (the masks), for the module oracle."""

    def __init__(self, module, **kwargs):
        self.module, self.kwargs = module, kwargs

    def __call__(self, *inputs):
        return self.module(*inputs, **self.kwargs)

    def __getattr__(self, name):
        return getattr(self.module, name)


def _masks(forward, dtype, device):
    d_kwargs, t_kwargs = {}, {}
    for name, value in forward.items():
        value = value.astype(dtype) if value.dtype.kind == "f" else value
        d_kwargs[name], t_kwargs[name] = to_distrain(value, device), to_torch(value)
    return d_kwargs, t_kwargs


def _source(constructor, seed=0):
    shape = (3, 5, D_MODEL) if constructor.get("batch_first") else (5, 3, D_MODEL)
    return np.random.default_rng(seed).standard_normal(shape)


def _check_both_modes(d_module, t_module, forward, constructor, dtype, device):
    d_kwargs, t_kwargs = _masks(forward, dtype, device)
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {}
    for mode in ("train", "eval"):
        getattr(d_module, mode)()
        getattr(t_module, mode)()
        d_module.zero_grad()
        t_module.zero_grad()
        check_module_against_torch(Call(d_module, **d_kwargs), Call(t_module, **t_kwargs), [_source(constructor)],
                                   dtype, device, **tolerance)


# every case in float32; float64 (tight tolerance) for the two that exercise the most
LAYER_RUNS = [(case, np.float32) for case in LAYER_CASES] + [(case, np.float64) for case in
                                                             ("post_norm_relu", "causal_and_padding")]


@pytest.mark.parametrize("case, dtype", LAYER_RUNS)
def test_encoder_layer_matches_torch(case, dtype, device):
    constructor, forward = LAYER_CASES[case]
    d_layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FEEDFORWARD, dropout=0.0, **_activation(distrain, constructor))
    t_layer = torch.nn.TransformerEncoderLayer(D_MODEL, HEADS, FEEDFORWARD, dropout=0.0,
                                               **_activation(torch, constructor))
    d_layer, t_layer = twins(d_layer, t_layer, dtype, device)
    _check_both_modes(d_layer, t_layer, forward, constructor, dtype, device)


@pytest.mark.parametrize("with_norm", [False, True])
def test_encoder_matches_torch(with_norm, device):
    constructor, forward = LAYER_CASES["causal_and_padding"]
    dtype = np.float32

    def encoder(lib, **extra):
        layer = lib.nn.TransformerEncoderLayer(D_MODEL, HEADS, FEEDFORWARD, dropout=0.1, batch_first=True)
        norm = lib.nn.LayerNorm(D_MODEL) if with_norm else None
        return lib.nn.TransformerEncoder(layer, num_layers=2, norm=norm, **extra)

    # torch's nested-tensor fast path would zero the padded positions in eval: off, as distrain has none
    d_encoder, t_encoder = twins(encoder(distrain), encoder(torch, enable_nested_tensor=False), dtype, device)
    assert [name for name, _ in d_encoder.named_parameters()][:2] == ["layers.0.self_attn.in_proj_weight",
                                                                      "layers.0.self_attn.in_proj_bias"]
    d_kwargs, t_kwargs = _masks({"mask": forward["src_mask"], "src_key_padding_mask": forward["src_key_padding_mask"]},
                                dtype, device)
    d_encoder.eval()
    t_encoder.eval()  # dropout 0.1 is off in evaluation
    check_module_against_torch(Call(d_encoder, **d_kwargs), Call(t_encoder, **t_kwargs), [_source(constructor)], dtype,
                               device, rtol=1e-4, atol=1e-5)


def test_encoder_layers_are_independent_copies():
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FEEDFORWARD)
    encoder = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=True)
    weights = [block.linear1.weight for block in encoder.layers]
    assert len({id(weight) for weight in weights}) == 3
    with distrain.no_grad():
        weights[0].zero_()
    assert np.any(to_numpy(weights[1])) and np.any(to_numpy(layer.linear1.weight))


def test_encoder_layer_dropout_is_random_in_training_and_off_in_eval():
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FEEDFORWARD, dropout=0.5, batch_first=True)
    x = distrain.randn(2, 6, D_MODEL)
    first, second = to_numpy(layer(x)), to_numpy(layer(x))
    assert not np.allclose(first, second)
    layer.eval()
    np.testing.assert_array_equal(to_numpy(layer(x)), to_numpy(layer(x)))


def test_encoder_layer_bad_activation_is_named():
    with pytest.raises(distrain.DistrainError, match="activation should be 'relu' or 'gelu'.*'swish'"):
        nn.TransformerEncoderLayer(D_MODEL, HEADS, activation="swish")
    with pytest.raises(RuntimeError):  # torch refuses it too
        torch.nn.TransformerEncoderLayer(D_MODEL, HEADS, activation="swish")


def test_encoder_layer_wrong_width_is_named():
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FEEDFORWARD)
    with pytest.raises(distrain.ShapeError, match=r"query must have 8 features.*\(5, 3, 6\)"):
        layer(distrain.randn(5, 3, 6))
