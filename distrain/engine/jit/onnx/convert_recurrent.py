"""RNN, LSTM and GRU layers as ONNX's RNN, LSTM and GRU operators, one per layer (both directions in one).

ONNX keeps PyTorch's weight shapes but orders the gates differently: LSTM (i, f, g, o) in
torch is (i, o, f, c) in ONNX, GRU (r, z, n) is (z, r, h), and GRU needs
linear_before_reset=1 (torch applies the reset gate after the hidden GEMM). The reordered
weights are initializers of their own. Sequences are time-major inside; batch_first inputs
and outputs are transposed around the layers, so the batch axis stays dynamic.
"""
from __future__ import annotations

import numpy

from ...nn import rnn
from ...nn.packed_sequence import PackedSequence
from .export_errors import OnnxExportError
from .registry import converts_layer

# mode -> (ONNX operator, torch gate blocks in ONNX's order, activations per direction, extra attributes)
OPERATORS = {
    "LSTM": ("LSTM", (0, 3, 1, 2), None, {}),
    "GRU": ("GRU", (1, 0, 2), None, {"linear_before_reset": 1}),
    "RNN_TANH": ("RNN", (0,), "Tanh", {}),
    "RNN_RELU": ("RNN", (0,), "Relu", {}),
}


def _array(tensor):
    return numpy.asarray(tensor.__array__())


def _reordered(weight, order, hidden):
    return numpy.concatenate([weight[block * hidden:(block + 1) * hidden] for block in order])


def _layer_weights(builder, module, layer, order, directions):
    """W, R, B initializers of one layer (all directions), in ONNX's gate order and layout."""
    hidden = module.hidden_size
    cells = module.all_weights[layer * directions:(layer + 1) * directions]
    w = numpy.stack([_reordered(_array(cell[0]), order, hidden) for cell in cells])
    r = numpy.stack([_reordered(_array(cell[1]), order, hidden) for cell in cells])
    path = builder.scope.strip("/")
    names = [builder.constant(w, f"{path}.W_l{layer}"), builder.constant(r, f"{path}.R_l{layer}")]
    if module.bias:
        b = numpy.stack([numpy.concatenate([_reordered(_array(cell[2]), order, hidden),
                                            _reordered(_array(cell[3]), order, hidden)]) for cell in cells])
        names.append(builder.constant(b, f"{path}.B_l{layer}"))
    else:
        names.append(None)
    return names


@converts_layer(rnn.RNN, rnn.LSTM, rnn.GRU,
                differs_in_training=lambda m: m.dropout > 0 and m.num_layers > 1)
def recurrent(builder, out, module, input, hx=None):
    if isinstance(input, PackedSequence):
        raise OnnxExportError(f"{builder.doing}: a PackedSequence input is not exported; export padded sequences "
                              f"(ONNX's sequence_lens would need the lengths as a graph input)")
    if module.proj_size:
        raise OnnxExportError(f"{builder.doing}: proj_size has no ONNX LSTM equivalent; export an LSTM without it")
    operator, order, activation, attributes = OPERATORS[module.mode]
    directions = 2 if module.bidirectional else 1
    unbatched = input.ndim == 2
    x = builder.value(input)
    if unbatched:
        x = builder.unsqueeze(x, [1])
    elif module.batch_first:
        x = builder.node("Transpose", [x], perm=[1, 0, 2])
    states = [] if hx is None else list(hx) if module.mode == "LSTM" else [hx]
    state_names = [builder.value(state) for state in states]
    if unbatched:
        state_names = [builder.unsqueeze(state, [1]) for state in state_names]
    finals = [[] for _ in range(2 if module.mode == "LSTM" else 1)]
    for layer in range(module.num_layers):
        initial = [builder.node("Slice", [state, builder.ints([layer * directions]),
                                          builder.ints([(layer + 1) * directions]), builder.ints([0])])
                   for state in state_names]
        inputs = [x] + _layer_weights(builder, module, layer, order, directions) + [None] + initial
        extra = dict(attributes)
        if activation is not None:
            extra["activations"] = [activation] * directions
        results = builder.node(operator, inputs, outputs=3 if module.mode == "LSTM" else 2,
                               hidden_size=module.hidden_size,
                               direction="bidirectional" if directions == 2 else "forward", **extra)
        sequence, states_out = results[0], results[1:]
        for final, state in zip(finals, states_out):
            final.append(state)
        # Y is (seq, directions, batch, hidden): directions side by side in the features, as torch
        if directions == 1:
            x = builder.squeeze(sequence, [1])
        else:
            x = builder.node("Reshape", [builder.node("Transpose", [sequence], perm=[0, 2, 1, 3]),
                                         builder.ints([0, 0, -1])])
    finals = [final[0] if len(final) == 1 else builder.node("Concat", final, axis=0) for final in finals]
    if unbatched:
        x = builder.squeeze(x, [1])
        finals = [builder.squeeze(final, [1]) for final in finals]
    elif module.batch_first:
        x = builder.node("Transpose", [x], perm=[1, 0, 2])
    return (x, tuple(finals)) if module.mode == "LSTM" else (x, finals[0])
