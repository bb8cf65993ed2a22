"""One recurrent layer in one direction (RNN tanh/relu, LSTM with optional projection, GRU) as one fused op.

Why fused: a char-RNN step is a few small matrices; recorded gate by gate, an LSTM of 35
steps is ~700 graph nodes whose Python overhead dwarfs the arithmetic. Here:

- the input projection of every time step is ONE GEMM before the loop
  (x (T*B, I) @ W_ih^T, both biases folded in), leaving one hidden GEMM per step;
- backward through time is one node per layer and direction: the loop runs backwards on
  arrays, collecting each step's pre-activation gate gradients, then dW_ih, dW_hh and dx
  are again ONE GEMM each over all steps.

Saved for backward: the activated gates (the forward's own buffer, overwritten in place),
the hidden state that entered each step, and for the LSTM the cell state that entered each
step and tanh of the new one; for the GRU the hidden part of the candidate gate (W_hn h + b_hn).

Gate layouts are PyTorch's: LSTM (i, f, g, o), GRU (r, z, n).

Packed sequences: `batch_sizes[t]` rows are active at time t (descending, as a
PackedSequence sorts them). Each step updates only rows [:n] of the running state, so rows
that have finished keep their final state (forward) and rows that have not started yet
keep the initial one (reverse): the same slice gives both directions, and h_n falls out.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..backend import array_module
from .core import check_same_dtype, grad_state, record, reference_grads, wrap

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# NOTE [ Sigmoid gates through one tanh ]
# sigmoid(x) = (1 + tanh(x / 2)) / 2. The weights' and biases' rows of the sigmoid gates are
# halved once per forward (exact: a power of two), so every gate's pre-activation comes out
# of the GEMMs ready for ONE tanh over the whole (batch, gates*hidden) block; then
# `acts * GATE_SCALE + GATE_SCALE` for the sigmoid columns (scale 0.5, offset 0.5; the tanh
# columns get scale 1 and offset 0). Three passes per step instead of nine strided ones.
SIGMOID_GATES = {"LSTM": (True, True, False, True), "GRU": (True, True)}  # (i, f, g, o); (r, z) of (r, z, n)


def _gate_scale(mode, hidden, xp, dtype):
    """Per-column (scale, offset) for the gates' pre-activations, or (None, None) where no gate is a sigmoid."""
    flags = SIGMOID_GATES.get(mode)
    if flags is None:
        return None, None
    width = GATES[mode] * hidden
    scale = xp.ones(width, dtype=dtype)
    offset = xp.zeros(width, dtype=dtype)
    for gate, is_sigmoid in enumerate(flags):
        if is_sigmoid:
            scale[gate * hidden:(gate + 1) * hidden] = 0.5
            offset[gate * hidden:(gate + 1) * hidden] = 0.5
    return scale, offset


def recurrent_layer(mode, input, hx, cx, weight_ih, weight_hh, bias_ih=None, bias_hh=None, weight_hr=None,
                    batch_sizes=None, reverse=False):
    """Run one layer over a time-major sequence; returns (output (T, B, P), h_n (B, P), c_n (B, H) or None).

    input (T, B, I); hx (B, P) with P = proj_size or hidden_size; cx (B, H) for the LSTM only;
    weight_ih (G*H, I), weight_hh (G*H, P), biases (G*H,), weight_hr (P, H) for a projected LSTM.
    """
    gates = GATES[mode]
    x = input._data
    w_ih, w_hh = weight_ih._data, weight_hh._data
    if x.ndim != 3 or x.shape[2] != w_ih.shape[1]:
        raise ShapeError(f"{mode}: input must be (seq_len, batch, input_size={w_ih.shape[1]}), "
                         f"got shape {tuple(x.shape)}")
    check_same_dtype(mode, ("input", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "hx", "cx", "weight_hr"),
                     (input, weight_ih, weight_hh, bias_ih, bias_hh, hx, cx, weight_hr))
    xp = array_module(x)
    steps, batch, in_size = x.shape
    for name, state, size in (("hx", hx, w_hh.shape[1]), ("cx", cx, w_hh.shape[0] // gates)):
        if (state is not None or name == "hx") and tuple(state.shape) != (batch, size):
            raise ShapeError(f"{mode}: initial state {name} must have shape (batch={batch}, {size}) for this layer, "
                             f"got {tuple(state.shape)}")
    width = w_ih.shape[0]
    out_size = w_hh.shape[1]
    packed = batch_sizes is not None
    sizes = [int(n) for n in batch_sizes] if packed else [batch] * steps
    new_buffer = xp.zeros if packed else xp.empty  # packed: inactive rows must hold zeros, not junk

    hidden = width // gates
    scale, offset = _gate_scale(mode, hidden, xp, x.dtype)
    # the recurrent weight transposed and contiguous: OpenBLAS runs the small per-step GEMM faster on it
    w_hh_t = xp.ascontiguousarray(w_hh.T)
    w_ih_t = w_ih.T
    if scale is not None:  # NOTE [ Sigmoid gates through one tanh ]
        w_hh_t *= scale
        w_ih_t = w_ih_t * scale
    flat_x = xp.ascontiguousarray(x).reshape(steps * batch, in_size)
    acts = (flat_x @ w_ih_t).reshape(steps, batch, width)  # pre-activations, activated in place below
    if bias_ih is not None:
        acts += bias_ih._data if scale is None else bias_ih._data * scale
    hidden_bias = None
    if bias_hh is not None:
        b_hh = bias_hh._data if scale is None else bias_hh._data * scale
        if mode == "GRU":  # b_hn sits inside r * (W_hn h + b_hn): it cannot be folded into the input side
            acts[..., :2 * hidden] += b_hh[:2 * hidden]
            hidden_bias = b_hh[2 * hidden:]
        else:
            acts += b_hh
    h = xp.array(hx._data, dtype=x.dtype)
    c = xp.array(cx._data, dtype=x.dtype) if mode == "LSTM" else None
    output = new_buffer((steps, batch, out_size), dtype=x.dtype)
    h_prev = new_buffer((steps, batch, out_size), dtype=x.dtype)
    c_prev = new_buffer((steps, batch, hidden), dtype=x.dtype) if mode == "LSTM" else None
    tanh_c = new_buffer((steps, batch, hidden), dtype=x.dtype) if mode == "LSTM" else None
    hidden_n = new_buffer((steps, batch, hidden), dtype=x.dtype) if mode == "GRU" else None
    w_hr_t = weight_hr._data.T if weight_hr is not None else None
    H = hidden
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        n = sizes[t]
        if n == 0:
            continue
        hp = h[:n]
        h_prev[t, :n] = hp
        g = acts[t, :n]
        if mode == "GRU":
            gh = hp @ w_hh_t
            if hidden_bias is not None:
                gh[:, 2 * H:] += hidden_bias
            g[:, :2 * H] += gh[:, :2 * H]
            gates_rz = g[:, :2 * H]
            xp.tanh(gates_rz, out=gates_rz)
            gates_rz *= 0.5
            gates_rz += 0.5
            candidate = g[:, 2 * H:]
            hidden_n[t, :n] = gh[:, 2 * H:]
            candidate += g[:, :H] * gh[:, 2 * H:]
            xp.tanh(candidate, out=candidate)
            new = hp - candidate
            new *= g[:, H:2 * H]
            new += candidate
        else:
            g += hp @ w_hh_t
            if mode == "LSTM":
                xp.tanh(g, out=g)
                g *= scale
                g += offset
                cp = c[:n]
                c_prev[t, :n] = cp
                new_c = g[:, H:2 * H] * cp
                new_c += g[:, :H] * g[:, 2 * H:3 * H]
                c[:n] = new_c
                tc = tanh_c[t, :n]
                xp.tanh(new_c, out=tc)
                new = g[:, 3 * H:] * tc
                if w_hr_t is not None:
                    new = new @ w_hr_t
            elif mode == "RNN_TANH":
                xp.tanh(g, out=g)
                new = g
            else:
                xp.maximum(g, 0, out=g)
                new = g
        h[:n] = new
        output[t, :n] = new
    out, h_n = wrap(output), wrap(h)
    c_n = wrap(c) if mode == "LSTM" else None
    outputs = (out, h_n) if c_n is None else (out, h_n, c_n)
    inputs = (input, hx, cx, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    if grad_state.enabled and any(t is not None and t._requires_grad for t in inputs):
        record(mode, _recurrent_backward, inputs, outputs, saved=inputs,
               args=(mode, sizes, reverse, flat_x, acts, h_prev, c_prev, tanh_c, hidden_n, packed))
    return out, h_n, c_n


def _recurrent_backward(node, grads):
    """Backward through time on arrays, newest step first; the weight gradients are GEMMs over all steps."""
    mode, sizes, reverse, flat_x, acts, h_prev, c_prev, tanh_c, hidden_n, packed = node.args
    if grad_state.enabled:  # create_graph: differentiate the primitive definition instead (core.reference_grads)
        return _reference_grads(node, grads)
    # all inputs are saved: flat_x may be a view of the input (version check), and create_graph recomputes
    _, _, _, w_ih_t, w_hh_t, _, _, w_hr_t = node.saved_tensors
    w_ih, w_hh = w_ih_t._data, w_hh_t._data
    w_hr = w_hr_t._data if w_hr_t is not None else None
    grad_out, grad_h = grads[0], grads[1]
    grad_c = grads[2] if mode == "LSTM" else None
    xp = array_module(acts)
    steps, batch, width = acts.shape
    H = width // GATES[mode]
    out_size = h_prev.shape[2]
    gy = grad_out._data if grad_out is not None else None
    dh = xp.array(grad_h._data) if grad_h is not None else xp.zeros((batch, out_size), dtype=acts.dtype)
    dc = None
    if mode == "LSTM":
        dc = xp.array(grad_c._data) if grad_c is not None else xp.zeros((batch, H), dtype=acts.dtype)
    new_buffer = xp.zeros if packed else xp.empty
    d_acts = new_buffer(acts.shape, dtype=acts.dtype)
    d_hidden = new_buffer(acts.shape, dtype=acts.dtype) if mode == "GRU" else d_acts
    d_proj = new_buffer(h_prev.shape, dtype=acts.dtype) if w_hr is not None else None
    for t in (range(steps) if reverse else range(steps - 1, -1, -1)):
        n = sizes[t]
        if n == 0:
            continue
        d = dh[:n]
        if gy is not None:
            d += gy[t, :n]
        a = acts[t, :n]
        dg = d_acts[t, :n]
        if mode == "LSTM":
            if w_hr is not None:
                d_proj[t, :n] = d
                d = d @ w_hr
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            tc = tanh_c[t, :n]
            dct = dc[:n]
            d_o = dg[:, 3 * H:]
            xp.multiply(d, tc, out=d_o)
            d_o *= o * (1 - o)
            d_tc = d * o
            d_tc *= 1 - tc * tc
            dct += d_tc
            xp.multiply(dct, g, out=dg[:, :H])
            dg[:, :H] *= i * (1 - i)
            xp.multiply(dct, c_prev[t, :n], out=dg[:, H:2 * H])
            dg[:, H:2 * H] *= f * (1 - f)
            xp.multiply(dct, i, out=dg[:, 2 * H:3 * H])
            dg[:, 2 * H:3 * H] *= 1 - g * g
            dct *= f
            dh[:n] = dg @ w_hh
        elif mode == "GRU":
            r, z, cand = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            dgh = d_hidden[t, :n]
            d_cand = dg[:, 2 * H:]
            xp.multiply(d, 1 - z, out=d_cand)
            d_cand *= 1 - cand * cand
            xp.multiply(d_cand, r, out=dgh[:, 2 * H:])
            xp.multiply(d_cand, hidden_n[t, :n], out=dg[:, :H])
            dg[:, :H] *= r * (1 - r)
            xp.multiply(d, h_prev[t, :n] - cand, out=dg[:, H:2 * H])
            dg[:, H:2 * H] *= z * (1 - z)
            dgh[:, :2 * H] = dg[:, :2 * H]
            carried = d * z
            carried += dgh @ w_hh
            dh[:n] = carried
        else:
            xp.multiply(d, 1 - a * a if mode == "RNN_TANH" else a > 0, out=dg)
            dh[:n] = dg @ w_hh
    flat_d = d_acts.reshape(steps * batch, width)
    x_edge, h_edge, c_edge, w_ih_edge, w_hh_edge, b_ih_edge, b_hh_edge, w_hr_edge = node.next_edges
    in_size = flat_x.shape[1]
    grad_x = wrap((flat_d @ w_ih).reshape(steps, batch, in_size)) if x_edge is not None else None
    grad_w_ih = wrap(flat_d.T @ flat_x) if w_ih_edge is not None else None
    grad_b_ih = wrap(flat_d.sum(axis=0)) if b_ih_edge is not None else None
    flat_dh = d_hidden.reshape(steps * batch, width)
    grad_w_hh = wrap(flat_dh.T @ h_prev.reshape(steps * batch, out_size)) if w_hh_edge is not None else None
    grad_b_hh = None
    if b_hh_edge is not None:
        grad_b_hh = wrap(flat_dh.sum(axis=0))  # equal to grad_b_ih except for the GRU, but its own array
    grad_w_hr = None
    if w_hr_edge is not None:
        raw = (acts[..., 3 * H:] * tanh_c).reshape(steps * batch, H)  # o * tanh(c), the unprojected h
        grad_w_hr = wrap(d_proj.reshape(steps * batch, out_size).T @ raw)
    grad_h0 = wrap(dh) if h_edge is not None else None
    grad_c0 = wrap(dc) if c_edge is not None else None
    return grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr


def _reference_grads(node, grads):
    """Input gradients through `_reference`, recorded, so that they can be differentiated again.

    The upstream gradients must be autograd.grad's grad_outputs, not factors of a scalar built
    here: they depend on this op's own outputs, and a walk from such a scalar would reach this
    node again and recurse."""
    mode, sizes, reverse = node.args[:3]
    inputs = node.saved_tensors
    grads = (grads,) if node.n_outputs == 1 else grads

    present = [position for position, grad in enumerate(grads) if grad is not None]

    def outputs_with_grads(*inputs):  # the upstream gradients go in as grad_outputs, never into the graph
        outputs = _reference(mode, sizes, reverse, *inputs)
        return tuple(outputs[position] for position in present)

    return reference_grads(outputs_with_grads, inputs, tuple(grads[position] for position in present))


def _reference(mode, sizes, reverse, x, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr):
    """The same recurrence from differentiable primitives (slow; used only under create_graph)."""
    from .elementwise import relu, sigmoid, tanh
    from .shape import cat, stack

    steps, batch = x.shape[0], x.shape[1]
    H = w_hh.shape[0] // GATES[mode]
    h, c = hx, cx
    outputs = [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        n = sizes[t]
        hp = h[:n]
        from_input = x[t, :n] @ w_ih.t() + (b_ih if b_ih is not None else 0)
        from_hidden = hp @ w_hh.t() + (b_hh if b_hh is not None else 0)
        if mode == "GRU":
            r = sigmoid(from_input[:, :H] + from_hidden[:, :H])
            z = sigmoid(from_input[:, H:2 * H] + from_hidden[:, H:2 * H])
            candidate = tanh(from_input[:, 2 * H:] + r * from_hidden[:, 2 * H:])
            new = (1 - z) * candidate + z * hp
        elif mode == "LSTM":
            gates = from_input + from_hidden
            new_c = sigmoid(gates[:, H:2 * H]) * c[:n] + sigmoid(gates[:, :H]) * tanh(gates[:, 2 * H:3 * H])
            new = sigmoid(gates[:, 3 * H:]) * tanh(new_c)
            if w_hr is not None:
                new = new @ w_hr.t()
            c = new_c if n == batch else cat([new_c, c[n:]], 0)
        else:
            new = (tanh if mode == "RNN_TANH" else relu)(from_input + from_hidden)
        h = new if n == batch else cat([new, h[n:]], 0)
        if n < batch:  # rows past a packed batch's active ones are zeros in the output, as in the fast path
            new = cat([new, wrap(array_module(new._data).zeros((batch - n, new.shape[1]), dtype=new._data.dtype))], 0)
        outputs[t] = new
    return (stack(outputs, 0), h) + ((c,) if mode == "LSTM" else ())
