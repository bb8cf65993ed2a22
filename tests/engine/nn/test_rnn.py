"""RNN / LSTM / GRU, their cells and nn.utils.rnn against PyTorch: outputs, final states, and the gradients of
the input, the initial states and every parameter (the torch layer's weights copied in by state_dict)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import distrain
from distrain import nn

from ..oracle import assert_close, to_distrain, to_torch
from .module_oracle import check_module_against_torch, twins

# torch's own notice that its oneDNN path lacks projections (it falls back to its default path)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

F32 = {"rtol": 1e-4, "atol": 1e-5}  # float32: BPTT sums over steps in another order than torch's


def _with_states(lib, layer):
    """A module calling `layer(x, hx)` with the initial states passed as plain inputs, so the checker sees them."""

    class WithStates(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = layer

        def forward(self, x, *states):
            hx = None if not states else (tuple(states) if len(states) == 2 else states[0])
            return self.rnn(x, hx)

    return WithStates()


def _build(name, kwargs, dtype):
    kwargs = dict(kwargs)
    d_layer, t_layer = getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
    return twins(_with_states(distrain, d_layer), _with_states(torch, t_layer), dtype)


def _states(name, kwargs, batch, seed):
    count = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    size = kwargs.get("proj_size", 0) or kwargs["hidden_size"]
    shape = (count, size) if batch is None else (count, batch, size)
    states = [np.random.default_rng(seed).standard_normal(shape)]
    if name == "LSTM":
        c_shape = shape[:-1] + (kwargs["hidden_size"],)
        states.append(np.random.default_rng(seed + 1).standard_normal(c_shape))
    return states


LAYER_CASES = [
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True}),
    ("RNN", {"bias": False, "batch_first": True}),
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("LSTM", {"bias": False, "num_layers": 2}),
    ("LSTM", {"proj_size": 3, "num_layers": 2, "bidirectional": True}),
    ("GRU", {}),
    ("GRU", {"num_layers": 3, "bidirectional": True}),
    ("GRU", {"bias": False, "batch_first": True, "bidirectional": True}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("name,options", LAYER_CASES)
def test_layer_matches_torch(name, options, with_states, dtype):
    kwargs = dict(input_size=4, hidden_size=5, **options)
    d_module, t_module = _build(name, kwargs, dtype)
    steps, batch = 6, 3
    x = np.random.default_rng(1).standard_normal((batch, steps, 4) if options.get("batch_first") else (steps, batch, 4))
    arrays = [x] + (_states(name, kwargs, batch, 2) if with_states else [])
    tolerance = F32 if dtype == np.float32 else {}
    check_module_against_torch(d_module, t_module, arrays, dtype, **tolerance)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_matches_torch(name):
    kwargs = {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True}
    d_module, t_module = _build(name, kwargs, np.float64)
    x = np.random.default_rng(0).standard_normal((5, 3))
    check_module_against_torch(d_module, t_module, [x] + _states(name, kwargs, None, 1), np.float64)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_parameter_names_shapes_and_default_init_match_torch(name):
    kwargs = {"input_size": 7, "hidden_size": 16, "num_layers": 2, "bidirectional": True}
    if name == "LSTM":
        kwargs["proj_size"] = 5
    d_layer, t_layer = getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
    d_shapes = [(n, tuple(p.shape)) for n, p in d_layer.named_parameters()]
    assert d_shapes == [(n, tuple(p.shape)) for n, p in t_layer.named_parameters()]
    bound = 1 / math.sqrt(16)
    values = np.concatenate([p.detach().numpy().ravel() for p in d_layer.parameters()])
    assert values.min() >= -bound and values.max() <= bound
    assert abs(values.std() - bound / math.sqrt(3)) < 0.01  # the standard deviation of U(-bound, bound)


def test_dropout_between_layers():
    kwargs = {"input_size": 3, "hidden_size": 4, "num_layers": 2, "dropout": 1.0}
    d_module, t_module = _build("LSTM", kwargs, np.float64)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    check_module_against_torch(d_module, t_module, [x], np.float64)  # p=1: the second layer sees zeros, as in torch
    d_module.eval(), t_module.eval()
    check_module_against_torch(d_module, t_module, [x], np.float64)  # eval: no dropout
    d_module.train()
    d_module.rnn.dropout = 0.5
    first, second = (d_module(to_distrain(x))[0].detach().numpy() for _ in range(2))
    assert not np.allclose(first, second)  # a fresh mask per forward


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.5)


CELL_CASES = [("RNNCell", {"nonlinearity": "tanh"}), ("RNNCell", {"nonlinearity": "relu", "bias": False}),
              ("LSTMCell", {}), ("LSTMCell", {"bias": False}), ("GRUCell", {}), ("GRUCell", {"bias": False})]


@pytest.mark.parametrize("dtype", [np.float32])  # the layers' tests cover float64 through the same op
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("name,options", CELL_CASES)
def test_cell_matches_torch(name, options, with_states, batch, dtype):
    d_module, t_module = twins(_with_states(distrain, getattr(nn, name)(4, 5, **options)),
                               _with_states(torch, getattr(torch.nn, name)(4, 5, **options)), dtype)
    rng = np.random.default_rng(0)
    lead = () if batch is None else (batch,)
    arrays = [rng.standard_normal(lead + (4,))]
    if with_states:
        arrays += [rng.standard_normal(lead + (5,)) for _ in range(2 if name == "LSTMCell" else 1)]
    check_module_against_torch(d_module, t_module, arrays, dtype, **(F32 if dtype == np.float32 else {}))


def _sequences(lengths, features=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, features)) for n in lengths]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pad_sequence_matches_torch(batch_first, padding_side):
    arrays = _sequences([2, 4, 1])
    d_in, t_in = [to_distrain(a, "cpu", True) for a in arrays], [to_torch(a, True) for a in arrays]
    d_out = nn.utils.rnn.pad_sequence(d_in, batch_first, -1.0, padding_side)
    t_out = torch.nn.utils.rnn.pad_sequence(t_in, batch_first, -1.0, padding_side)
    assert_close(d_out, t_out)
    upstream = np.random.default_rng(1).standard_normal(tuple(t_out.shape))
    d_out.backward(to_distrain(upstream, "cpu")), t_out.backward(to_torch(upstream))
    for d, t in zip(d_in, t_in):
        assert_close(d.grad, t.grad)


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_pack_and_pad_packed_match_torch(enforce_sorted):
    lengths = [4, 3, 3, 1] if enforce_sorted else [2, 4, 1, 3]
    padded = np.random.default_rng(0).standard_normal((2 * 4, 4, 3))[:4].transpose(1, 0, 2)  # (B, T, 3)
    d_x, t_x = to_distrain(padded, "cpu", True), to_torch(padded, True)
    d_packed = nn.utils.rnn.pack_padded_sequence(d_x, lengths, batch_first=True, enforce_sorted=enforce_sorted)
    t_packed = torch.nn.utils.rnn.pack_padded_sequence(t_x, lengths, batch_first=True, enforce_sorted=enforce_sorted)
    for d_field, t_field in zip(d_packed, t_packed):
        assert (d_field is None) == (t_field is None)
        if d_field is not None:
            assert_close(d_field, t_field)
    d_out, d_lengths = nn.utils.rnn.pad_packed_sequence(d_packed, batch_first=True, padding_value=2.0, total_length=5)
    t_out, t_lengths = torch.nn.utils.rnn.pad_packed_sequence(t_packed, batch_first=True, padding_value=2.0,
                                                              total_length=5)
    assert_close(d_out, t_out)
    assert_close(d_lengths, t_lengths)
    upstream = np.random.default_rng(1).standard_normal(tuple(t_out.shape))
    d_out.backward(to_distrain(upstream, "cpu")), t_out.backward(to_torch(upstream))
    assert_close(d_x.grad, t_x.grad)


@pytest.mark.parametrize("name,options", [("LSTM", {"num_layers": 2, "bidirectional": True}),
                                          ("GRU", {"bidirectional": True}), ("RNN", {"num_layers": 2}),
                                          ("LSTM", {"proj_size": 2})])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_layer_takes_packed_sequence_like_torch(name, options, enforce_sorted):
    kwargs = dict(input_size=3, hidden_size=4, **options)
    d_module, t_module = _build(name, kwargs, np.float64)
    lengths = [5, 3, 2] if enforce_sorted else [2, 5, 3]
    arrays = _sequences(lengths)
    states = _states(name, kwargs, 3, 7)
    d_seq, t_seq = [to_distrain(a, "cpu", True) for a in arrays], [to_torch(a, True) for a in arrays]
    d_states, t_states = [to_distrain(s, "cpu", True) for s in states], [to_torch(s, True) for s in states]
    d_output, d_final = d_module(nn.utils.rnn.pack_sequence(d_seq, enforce_sorted), *d_states)
    t_output, t_final = t_module(torch.nn.utils.rnn.pack_sequence(t_seq, enforce_sorted), *t_states)
    d_flat = [d_output.data] + (list(d_final) if name == "LSTM" else [d_final])
    t_flat = [t_output.data] + (list(t_final) if name == "LSTM" else [t_final])
    assert_close(d_output.batch_sizes, t_output.batch_sizes)
    rng = np.random.default_rng(3)
    for d, t in zip(d_flat, t_flat):
        assert_close(d, t)
        upstream = rng.standard_normal(tuple(t.shape))
        d.backward(to_distrain(upstream, "cpu"), retain_graph=True), t.backward(to_torch(upstream), retain_graph=True)
    for d, t in zip(d_seq + d_states, t_seq + t_states):
        assert_close(d.grad, t.grad)
    t_params = dict(t_module.named_parameters())
    for parameter_name, parameter in d_module.named_parameters():
        assert_close(parameter.grad, t_params[parameter_name].grad, what=parameter_name)


def test_bad_arguments_raise_distrain_errors_that_say_what_to_fix():
    lstm = nn.LSTM(4, 5, num_layers=2)
    with pytest.raises(distrain.ShapeError, match="input_size"):
        lstm(distrain.randn(6, 3, 7))
    with pytest.raises(distrain.ShapeError, match=r"h_0 of shape \(2, 3, 5\)"):
        lstm(distrain.randn(6, 3, 4), (distrain.zeros(1, 3, 5), distrain.zeros(2, 3, 5)))
    with pytest.raises(distrain.ShapeError, match="2 \\(unbatched\\) or 3 dimensions"):
        lstm(distrain.randn(6))
    with pytest.raises(distrain.ArgumentError, match="tuple"):
        lstm(distrain.randn(6, 3, 4), distrain.zeros(2, 3, 5))
    with pytest.raises(distrain.ArgumentError, match="proj_size"):
        nn.GRU(4, 5, proj_size=2)
    with pytest.raises(distrain.ArgumentError, match="nonlinearity"):
        nn.RNN(4, 5, nonlinearity="sigmoid")
    with pytest.raises(distrain.ShapeError, match="hx"):
        nn.GRUCell(4, 5)(distrain.randn(3, 4), distrain.zeros(2, 5))
    with pytest.raises(distrain.DTypeError, match="same dtype"):
        nn.GRU(4, 5)(distrain.randn(6, 3, 4, dtype=distrain.float64))
    with pytest.raises(distrain.DTypeError, match="hx"):
        nn.RNN(4, 5)(distrain.randn(6, 3, 4), distrain.zeros(1, 3, 5, dtype=distrain.float64))
    with pytest.raises(distrain.ArgumentError, match="enforce_sorted=False"):
        nn.utils.rnn.pack_sequence([distrain.ones(1, 2), distrain.ones(3, 2)])


@pytest.mark.parametrize("name,options,packed", [("LSTM", {"num_layers": 2, "proj_size": 2}, False),
                                                 ("GRU", {"bidirectional": True}, True),
                                                 ("RNN", {"nonlinearity": "relu"}, False)])
def test_second_derivatives_match_torch(name, options, packed):
    """create_graph=True: the fused backward is recomputed from primitives, so gradients of gradients exist."""
    d_module, t_module = _build(name, dict(input_size=3, hidden_size=4, **options), np.float64)
    rng = np.random.default_rng(0)
    lengths = [5, 3, 2]
    arrays = [rng.standard_normal((n, 3)) for n in lengths]
    results = []
    for lib, module in ((distrain, d_module), (torch, t_module)):
        seqs = [lib.tensor(a, requires_grad=True) for a in arrays]
        x = lib.nn.utils.rnn.pack_sequence(seqs) if packed else lib.nn.utils.rnn.pad_sequence(seqs)
        output, final = module(x)
        output = output.data if packed else output
        final = final[0] if name == "LSTM" else final
        loss = (output * output).sum() + (final * final).sum()
        grads = lib.autograd.grad(loss, seqs, create_graph=True)
        sum(((g * g).sum() for g in grads), 0 * loss).backward()
        results.append((seqs, dict(module.named_parameters())))
    (d_seqs, d_params), (t_seqs, t_params) = results
    for d, t in zip(d_seqs, t_seqs):
        assert_close(d.grad, t.grad)
    for parameter_name, parameter in d_params.items():
        assert_close(parameter.grad, t_params[parameter_name].grad, what=parameter_name)


def _char_model(lib):
    nn_ = lib.nn

    class CharModel(nn_.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn_.Embedding(11, 6)
            self.lstm = nn_.LSTM(6, 8, num_layers=2, batch_first=True)
            self.decoder = nn_.Linear(8, 11)

        def forward(self, tokens, state=None):
            output, state = self.lstm(self.embedding(tokens), state)
            return self.decoder(output).reshape(-1, 11), state

    return CharModel()


def test_char_lstm_training_with_carried_state_matches_torch():
    """The char-RNN loop: truncated BPTT with the state carried (detached) between batches, SGD, clipping."""
    d_model, t_model = twins(_char_model(distrain), _char_model(torch), np.float32)
    runs = {}
    for lib, model in ((distrain, d_model), (torch, t_model)):
        optimizer = lib.optim.SGD(model.parameters(), lr=0.5)
        state, losses = None, []
        for batch in range(3):
            tokens = np.random.default_rng(batch).integers(0, 11, (4, 7))
            targets = np.random.default_rng(batch + 10).integers(0, 11, 4 * 7)
            if state is not None:
                state = tuple(s.detach() for s in state)
            logits, state = model(lib.tensor(tokens), state)
            loss = lib.nn.functional.cross_entropy(logits, lib.tensor(targets))
            optimizer.zero_grad()
            loss.backward()
            lib.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
            losses.append(loss.item())
        runs[lib.__name__] = losses
    np.testing.assert_allclose(runs["distrain"], runs["torch"], rtol=1e-5)
    t_params = dict(t_model.named_parameters())
    for name, parameter in d_model.named_parameters():
        assert_close(parameter, t_params[name].detach(), 1e-4, 1e-5, what=name)


def test_modifying_the_input_in_place_before_backward_is_detected():
    x = distrain.randn(4, 2, 3, requires_grad=True)
    y = x * 1.0
    output, _ = nn.LSTM(3, 4)(y)
    y.mul_(2)
    with pytest.raises(distrain.AutogradError, match="modified by an in-place operation"):
        output.sum().backward()
