"""export_onnx of the recurrent and attention layers: ONNX Runtime against distrain's eager output on two batch
sizes, and the recurrent layers also against their PyTorch twins holding the same weights (an oracle that shares
no code with distrain, so a wrong gate order cannot pass)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from .onnx_oracle import batch_axes, check_export, random


@pytest.fixture(autouse=True)
def _seed():
    distrain.manual_seed(0)
    torch.manual_seed(0)


def _torch_twin(layer, torch_class, **options):
    twin = torch_class(layer.input_size, layer.hidden_size, **options)
    twin.load_state_dict({name: torch.tensor(value.numpy()) for name, value in layer.state_dict().items()})
    return twin.eval()


RECURRENT_CASES = [
    (nn.LSTM, torch.nn.LSTM, dict(num_layers=2, bidirectional=True, batch_first=True)),
    (nn.LSTM, torch.nn.LSTM, dict(num_layers=1, batch_first=False)),
    (nn.GRU, torch.nn.GRU, dict(num_layers=2, batch_first=False, bidirectional=True)),
    (nn.GRU, torch.nn.GRU, dict(num_layers=1, batch_first=True)),
    (nn.RNN, torch.nn.RNN, dict(num_layers=2, nonlinearity="relu", batch_first=True)),
]


@pytest.mark.parametrize("layer_class, torch_class, options", RECURRENT_CASES,
                         ids=[f"{case[0].__name__}-{'-'.join(f'{k}={v}' for k, v in case[2].items())}"
                              for case in RECURRENT_CASES])
def test_recurrent_layer(tmp_path, layer_class, torch_class, options):
    layer = layer_class(5, 6, dropout=0.3 if options["num_layers"] > 1 else 0.0, **options).eval()
    batch_axis = 0 if options["batch_first"] else 1
    shape = (lambda n: (n, 4, 5)) if options["batch_first"] else (lambda n: (4, n, 5))
    outputs = 3 if layer_class is nn.LSTM else 2
    axes = {"input": {batch_axis: "batch"}, "output0": {batch_axis: "batch"},
            **{f"output{i}": {1: "batch"} for i in range(1, outputs)}}
    example, other = random(*shape(2)), random(*shape(3), seed=1)
    onnx_outputs = check_export(layer, [example], [other], tmp_path, dynamic_axes=axes)
    twin = _torch_twin(layer, torch_class, **options)
    with torch.no_grad():
        for arrays, got in zip((example, other), onnx_outputs):
            expected = twin(torch.tensor(arrays))
            expected = [expected[0], *expected[1]] if layer_class is nn.LSTM else list(expected)
            for g, e in zip(got, expected):
                np.testing.assert_allclose(g, e.numpy(), rtol=1e-5, atol=1e-6)


class LstmWithState(nn.Module):
    """An LSTM given its initial states as graph inputs, its last step through a Linear head."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x, h0, c0):
        out, (h, c) = self.lstm(x, (h0, c0))
        return self.head(out[:, -1]), h, c


def test_lstm_with_initial_states_as_inputs(tmp_path):
    def arrays(n, seed):
        return [random(n, 5, 3, seed=seed), random(2, n, 4, seed=seed + 1), random(2, n, 4, seed=seed + 2)]

    axes = {"input0": {0: "batch"}, "input1": {1: "batch"}, "input2": {1: "batch"}, "output0": {0: "batch"},
            "output1": {1: "batch"}, "output2": {1: "batch"}}
    check_export(LstmWithState().eval(), arrays(2, 0), arrays(4, 10), tmp_path, dynamic_axes=axes)


class Attention(nn.Module):
    def __init__(self, batch_first):
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first, dropout=0.1)

    def forward(self, query, memory, padding):
        output, weights = self.attention(query, memory, memory, key_padding_mask=padding)
        return output, weights


def test_multihead_attention_cross_with_padding_mask_and_weights(tmp_path):
    def arrays(n, seed):
        padding = np.zeros((n, 6), dtype=bool)
        padding[:, -2:] = True
        return [random(n, 5, 8, seed=seed), random(n, 6, 8, seed=seed + 1), padding]

    axes = batch_axes({"input": 3, "output": 2})
    check_export(Attention(batch_first=True).eval(), arrays(2, 0), arrays(3, 10), tmp_path, dynamic_axes=axes)


def test_multihead_self_attention_sequence_first_with_causal_mask(tmp_path):
    attention = nn.MultiheadAttention(8, 4).eval()
    mask = distrain.triu(distrain.ones(5, 5, dtype=distrain.bool), diagonal=1)  # True: may not attend

    def self_attention(x):
        return attention(x, x, x, attn_mask=mask, need_weights=True, average_attn_weights=False)

    axes = {"input": {1: "batch"}, "output0": {1: "batch"}, "output1": {0: "batch"}}
    check_export(self_attention, [random(5, 2, 8)], [random(5, 3, 8, seed=1)], tmp_path, dynamic_axes=axes)


@pytest.mark.parametrize("norm_first, activation", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder(tmp_path, norm_first, activation):
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, norm_first=norm_first,
                                       activation=activation)
    encoder = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(8), enable_nested_tensor=False).eval()
    check_export(encoder, [random(2, 5, 8)], [random(3, 5, 8, seed=1)], tmp_path)


def test_scaled_dot_product_attention_causal(tmp_path):
    def function(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def arrays(n, seed):
        return [random(n, 2, 4, 8, seed=seed + i) for i in range(3)]

    check_export(function, arrays(2, 0), arrays(3, 5), tmp_path)
