"""RNN, LSTM, GRU and their cells, with PyTorch's parameter names, shapes, gate order and initialisation.

Every layer and direction is one fused op (ops/recurrent.py: one input GEMM for all steps,
one hidden GEMM per step, one backward node); this file only stacks layers and directions,
applies dropout between layers, and handles batch_first, unbatched input, initial states
and PackedSequence. A cell is the same op over one time step.

Parameters are named as in PyTorch, so a torch state_dict loads:
weight_ih_l{k}[_reverse] (gates*hidden, input), weight_hh_l{k}[_reverse] (gates*hidden, hidden or proj_size),
bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse] (gates*hidden), weight_hr_l{k}[_reverse] (proj_size, hidden);
all drawn from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

Example::

    >>> lstm = distrain.nn.LSTM(10, 20, num_layers=2, batch_first=True)
    >>> output, (h_n, c_n) = lstm(distrain.randn(3, 5, 10))
    >>> output.shape, h_n.shape
    (distrain.Size([3, 5, 20]), distrain.Size([2, 3, 20]))
"""
from __future__ import annotations

import math
import numbers
import warnings

from ...errors import ArgumentError, ShapeError
from .. import factories
from ..ops.dropout import dropout
from ..ops.recurrent import GATES, recurrent_layer
from ..ops.shape import cat, stack
from . import init
from .module import Module
from .packed_sequence import PackedSequence, packed_from_padded, padded_from_packed
from .parameter import Parameter

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]


def _positive_int(owner, name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ArgumentError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _new_parameter(shape, device, dtype):
    return Parameter(factories.empty(*shape, device=device, dtype=dtype))


def _uniform_init(module):
    bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        init.uniform_(weight, -bound, bound)


class RNNBase(Module):
    """The stacked, optionally bidirectional recurrence shared by RNN, LSTM and GRU (`mode` picks the cell)."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive_int(name, "input_size", input_size, 0)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.num_layers = _positive_int(name, "num_layers", num_layers)
        self.proj_size = _positive_int(name, "proj_size", proj_size, 0)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ArgumentError(f"{name}: dropout must be a number in [0, 1] (the probability of zeroing an element "
                                f"of each layer's output but the last), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        if self.proj_size and mode != "LSTM":
            raise ArgumentError(f"{name}: proj_size is an LSTM option; got proj_size={proj_size}")
        if self.proj_size >= self.hidden_size:
            raise ArgumentError(f"{name}: proj_size ({proj_size}) must be smaller than hidden_size ({hidden_size})")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        directions = 2 if self.bidirectional else 1
        width = GATES[mode] * self.hidden_size
        state_size = self.proj_size or self.hidden_size
        self._flat_weights_names = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else state_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (width, layer_input)), ("weight_hh", (width, state_size))]
                if self.bias:
                    shapes += [("bias_ih", (width,)), ("bias_hh", (width,))]
                if self.proj_size:
                    shapes.append(("weight_hr", (self.proj_size, self.hidden_size)))
                for prefix, shape in shapes:
                    setattr(self, prefix + suffix, _new_parameter(shape, device, dtype))
                    self._flat_weights_names.append(prefix + suffix)
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_init(self)

    def flatten_parameters(self):
        """Accepted for PyTorch scripts (cuDNN wants its weights in one buffer); distrain's op reads them as they are."""

    @property
    def all_weights(self):
        """Each layer and direction's parameters, in PyTorch's order."""
        per_cell = len(self._flat_weights_names) // (self.num_layers * (2 if self.bidirectional else 1))
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i:i + per_cell]] for i in range(0, len(names), per_cell)]

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        for key, default in (("proj_size", 0), ("num_layers", 1), ("bias", True), ("batch_first", False),
                             ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, key) != default:
                text += f", {key}={getattr(self, key)}"
        return text

    def _initial_states(self, hx, batch, unbatched, reference):
        """hx as (h0, c0) lists of per-(layer, direction) (batch, size) tensors; zeros when not given."""
        directions = 2 if self.bidirectional else 1
        count = self.num_layers * directions
        sizes = [self.proj_size or self.hidden_size] + ([self.hidden_size] if self.mode == "LSTM" else [])
        if hx is None:
            states = [factories.zeros(count, batch, size, dtype=reference.dtype, device=reference.device)
                      for size in sizes]
        else:
            states = list(hx) if self.mode == "LSTM" else [hx]
            if self.mode == "LSTM" and (not isinstance(hx, tuple) or len(states) != 2):
                raise ArgumentError("LSTM: hx must be a tuple (h_0, c_0)")
            for position, (state, size) in enumerate(zip(states, sizes)):
                expected = (count, size) if unbatched else (count, batch, size)
                if tuple(state.shape) != expected:
                    what = ("h_0", "c_0")[position]
                    raise ShapeError(f"{type(self).__name__}: expected {what} of shape {expected} "
                                     f"(num_layers*num_directions, {'' if unbatched else 'batch, '}size), got "
                                     f"{tuple(state.shape)}")
            if unbatched:
                states = [state.unsqueeze(1) for state in states]
        return states

    def forward(self, input, hx=None):
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        batch_sizes = None
        if packed:
            data, batch_sizes_tensor, sorted_indices, unsorted_indices = input
            batch_sizes = batch_sizes_tensor.tolist()
            x = padded_from_packed(data, batch_sizes)
            unbatched = False
        else:
            if input.dim() not in (2, 3):
                raise ShapeError(f"{name}: expected input of 2 (unbatched) or 3 dimensions, got shape "
                                 f"{tuple(input.shape)}")
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[2] != self.input_size:
            raise ShapeError(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                             f"{x.shape[2]}")
        states = self._initial_states(hx, x.shape[1], unbatched, x)
        if packed and sorted_indices is not None:
            # the permutations live on the CPU (as in torch); as lists they index a state on any device
            states = [state.index_select(1, sorted_indices.tolist()) for state in states]
        h0 = states[0].unbind(0)
        c0 = states[1].unbind(0) if self.mode == "LSTM" else None
        directions = 2 if self.bidirectional else 1
        weights = self.all_weights
        final_h, final_c = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                w = weights[index]
                w_ih, w_hh = w[0], w[1]
                b_ih, b_hh = (w[2], w[3]) if self.bias else (None, None)
                w_hr = w[-1] if self.proj_size else None
                out, h_n, c_n = recurrent_layer(self.mode, x, h0[index], c0[index] if c0 else None, w_ih, w_hh,
                                                b_ih, b_hh, w_hr, batch_sizes, reverse=direction == 1)
                outputs.append(out)
                final_h.append(h_n)
                final_c.append(c_n)
            x = outputs[0] if directions == 1 else cat(outputs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = dropout(x, self.dropout, True)
        h_n = stack(final_h, 0)
        c_n = stack(final_c, 0) if self.mode == "LSTM" else None
        if packed:
            output = PackedSequence(packed_from_padded(x, batch_sizes), batch_sizes_tensor, sorted_indices,
                                    unsorted_indices)
            if unsorted_indices is not None:
                h_n = h_n.index_select(1, unsorted_indices.tolist())
                c_n = c_n.index_select(1, unsorted_indices.tolist()) if c_n is not None else None
        elif unbatched:
            output, h_n = x.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        else:
            output = x.transpose(0, 1) if self.batch_first else x
        return output, ((h_n, c_n) if self.mode == "LSTM" else h_n)


class RNN(RNNBase):
    """Elman RNN: h_t = nonlinearity(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), nonlinearity 'tanh' or 'relu'."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, proj_size=0):
        if nonlinearity not in ("tanh", "relu"):
            raise ArgumentError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_" + nonlinearity.upper(), input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory; returns output, (h_n, c_n). proj_size > 0 projects h_t to proj_size (W_hr)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit (PyTorch's form: the reset gate multiplies W_hn h + b_hn)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, proj_size=0):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)  # proj_size is accepted only to refuse it with a clear message


class RNNCellBase(Module):
    """One time step of a recurrent layer: input (B, input_size) or (input_size,), state(s) of hidden_size."""

    def __init__(self, mode, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive_int(name, "input_size", input_size, 0)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.bias = bool(bias)
        width = GATES[mode] * self.hidden_size
        self.weight_ih = _new_parameter((width, self.input_size), device, dtype)
        self.weight_hh = _new_parameter((width, self.hidden_size), device, dtype)
        if self.bias:
            self.bias_ih = _new_parameter((width,), device, dtype)
            self.bias_hh = _new_parameter((width,), device, dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_init(self)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _step(self, input, states):
        """Run the one-step op; returns (h', c') with c' None except for the LSTM."""
        name = type(self).__name__
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ShapeError(f"{name}: expected input of shape (batch, {self.input_size}) or ({self.input_size},), "
                             f"got {tuple(input.shape)}")
        unbatched = input.dim() == 1
        batch = 1 if unbatched else input.shape[0]
        filled = []
        for position, state in enumerate(states):
            if state is None:
                state = factories.zeros(batch, self.hidden_size, dtype=input.dtype, device=input.device)
            elif tuple(state.shape) != ((self.hidden_size,) if unbatched else (batch, self.hidden_size)):
                raise ShapeError(f"{name}: expected {('hx', 'cx')[position]} of shape "
                                 f"{(self.hidden_size,) if unbatched else (batch, self.hidden_size)}, got "
                                 f"{tuple(state.shape)}")
            elif unbatched:
                state = state.unsqueeze(0)
            filled.append(state)
        x = input.reshape(1, batch, self.input_size)
        _, h, c = recurrent_layer(self.mode, x, filled[0], filled[1] if len(filled) > 1 else None, self.weight_ih,
                                  self.weight_hh, self.bias_ih, self.bias_hh)
        if unbatched:
            h, c = h.squeeze(0), (c.squeeze(0) if c is not None else None)
        return h, c


class RNNCell(RNNCellBase):
    """h' = nonlinearity(x W_ih^T + b_ih + h W_hh^T + b_hh)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ArgumentError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_" + nonlinearity.upper(), input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        return self._step(input, [hx])[0]


class LSTMCell(RNNCellBase):
    """Returns (h', c') from input and hx = (h, c) (zeros when None)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        return self._step(input, [None, None] if hx is None else list(hx))


class GRUCell(RNNCellBase):
    """h' = (1 - z) * n + z * h, PyTorch's gates."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        return self._step(input, [hx])[0]
