"""The single-process engine on the CPU: distrain beside PyTorch, one training step at a time.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_engine_cpu.py                  # all cores, 10 s per case
    python benchmarks/bench_engine_cpu.py --threads 1 --seconds 5
    python benchmarks/bench_engine_cpu.py --json out.jsonl # also append the JSON lines there
    python benchmarks/bench_engine_cpu.py --record         # ... to benchmarks/results/<date>_<cpu>_<cores>c.jsonl

Cases (each step is forward, backward and a plain SGD update, written once and run by
both frameworks: the step functions below take the framework module as an argument):

  two_layer_net   the lecture's net: N=64, D_in=1000, H=100, D_out=10,
                  x.mm(w1).clamp(min=0).mm(w2), squared-error sum.      target distrain/peer <= 0.75
                  "floor" is the same step hand-written in NumPy: the cost with zero engine overhead.
  mlp_784_1024    784-1024-1024-10 with biases, relu, batch 256, F.cross_entropy.  target <= 0.95
                  "floor" again in plain NumPy; at this size the matmuls (the BLAS) dominate.
  matmul_f32_1024 one 1024x1024 @ 1024x1024 float32 product, no autograd: the machine's matmul
                  rate (GFLOP/s in the JSON) for context; no target.

The small net measures per-op engine overhead (Python, graph bookkeeping, allocation); the
MLP measures whether that overhead stays negligible next to real arithmetic. How the
harness alternates the contenders and sets threads: see benchmarks/harness.py.
"""
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only: numpy is imported after the thread limit is set

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LEARNING_RATE_TWO_LAYER = 1e-6
LEARNING_RATE_MLP = 1e-2


def sgd_update(lib, weights, learning_rate):
    """w -= lr * w.grad; w.grad = None, outside the graph, exactly as the lecture does it."""
    with lib.no_grad():
        for weight in weights:
            weight -= learning_rate * weight.grad
            weight.grad = None


def to_framework(lib, arrays, requires_grad):
    """Copy NumPy arrays into lib's tensors, so both frameworks start from the same values."""
    return [lib.tensor(array.copy(), requires_grad=requires_grad) for array in arrays]


# --- (a) the lecture's two-layer net --------------------------------------------------------

def two_layer_net_data():
    import numpy as np

    rng = np.random.default_rng(0)
    N, D_in, H, D_out = 64, 1000, 100, 10
    x, y = rng.standard_normal((N, D_in)), rng.standard_normal((N, D_out))
    w1, w2 = rng.standard_normal((D_in, H)), rng.standard_normal((H, D_out))
    return [a.astype(np.float32) for a in (x, y)], [a.astype(np.float32) for a in (w1, w2)]


def two_layer_net_step(lib, data, weights):
    x, y = to_framework(lib, data, requires_grad=False)
    w1, w2 = to_framework(lib, weights, requires_grad=True)

    def step():
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        sgd_update(lib, (w1, w2), LEARNING_RATE_TWO_LAYER)

    return step


def two_layer_net_numpy_step(data, weights):
    import numpy as np

    x, y = (a.copy() for a in data)
    w1, w2 = weights = [a.copy() for a in weights]
    learning_rate = np.float32(LEARNING_RATE_TWO_LAYER)

    def step():
        h = x @ w1
        h_relu = np.maximum(h, 0)
        y_pred = h_relu @ w2
        difference = y_pred - y
        loss = np.square(difference).sum()  # noqa: F841  (computed, as the engines do)
        grad_y_pred = 2 * difference
        grad_w2 = h_relu.T @ grad_y_pred
        grad_h = grad_y_pred @ w2.T
        grad_h *= h > 0  # relu's backward: a multiply, far cheaper than masked assignment
        for weight, grad in zip(weights, (x.T @ grad_h, grad_w2)):
            weight -= learning_rate * grad

    return step


def two_layer_net_flops():
    """x @ w1 forward and its weight gradient (x needs none); h @ w2 forward and both gradients."""
    n, d_in, hidden, d_out = 64, 1000, 100, 10
    return 2 * n * (2 * d_in * hidden + 3 * hidden * d_out)


def two_layer_net_traffic():
    """No unavoidable DRAM traffic (NOTE [ Physical limit ], harness.py): the whole working set
    (x, y, the weights, their gradients and the activations: ~0.8 MB) stays in the caches from
    one step to the next, so the limit is the FLOPs alone."""
    return 0


def two_layer_net_setup():
    import torch

    import distrain

    data, weights = two_layer_net_data()
    return {
        "distrain": two_layer_net_step(distrain, data, weights),
        "peer": two_layer_net_step(torch, data, weights),
        "floor": two_layer_net_numpy_step(data, weights),
    }


# --- (b) an MLP 784-1024-1024-10 with cross-entropy -----------------------------------------

MLP_SIZES, MLP_BATCH = (784, 1024, 1024, 10), 256


def mlp_traffic():
    """Bytes as two_layer_net_traffic's model: the batch once, every layer's output 4x, parameters 6x."""
    parameters = sum(a * b + b for a, b in itertools.pairwise(MLP_SIZES))
    return 4 * (MLP_BATCH * MLP_SIZES[0] + 4 * MLP_BATCH * sum(MLP_SIZES[1:]) + 6 * parameters)


def mlp_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((MLP_BATCH, MLP_SIZES[0])).astype(np.float32)
    labels = rng.integers(0, MLP_SIZES[-1], size=MLP_BATCH)
    parameters = []
    for fan_in, fan_out in itertools.pairwise(MLP_SIZES):
        parameters.append((rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(np.float32))
        parameters.append(np.zeros(fan_out, dtype=np.float32))
    return x, labels, parameters


def mlp_step(lib, x, labels, parameters):
    F = lib.nn.functional
    x = lib.tensor(x.copy())
    labels = lib.tensor(labels.copy())
    parameters = to_framework(lib, parameters, requires_grad=True)
    w1, b1, w2, b2, w3, b3 = parameters

    def step():
        h1 = F.relu(x.mm(w1) + b1)
        h2 = F.relu(h1.mm(w2) + b2)
        loss = F.cross_entropy(h2.mm(w3) + b3, labels)
        loss.backward()
        sgd_update(lib, parameters, LEARNING_RATE_MLP)

    return step


def mlp_numpy_step(x, labels, parameters):
    import numpy as np

    w1, b1, w2, b2, w3, b3 = parameters = [p.copy() for p in parameters]
    rows = np.arange(len(labels))
    learning_rate = np.float32(LEARNING_RATE_MLP)

    def step():
        a1 = x @ w1 + b1
        h1 = np.maximum(a1, 0)
        a2 = h1 @ w2 + b2
        h2 = np.maximum(a2, 0)
        logits = h2 @ w3 + b3
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sums = exp.sum(axis=1, keepdims=True)
        loss = (np.log(sums[:, 0]) - shifted[rows, labels]).mean()  # noqa: F841
        grad_logits = exp / sums
        grad_logits[rows, labels] -= 1
        grad_logits /= len(labels)
        grad_a2 = grad_logits @ w3.T
        grad_a2 *= a2 > 0
        grad_a1 = grad_a2 @ w2.T
        grad_a1 *= a1 > 0
        grads = (x.T @ grad_a1, grad_a1.sum(0), h1.T @ grad_a2, grad_a2.sum(0),
                 h2.T @ grad_logits, grad_logits.sum(0))
        for parameter, grad in zip(parameters, grads):
            parameter -= learning_rate * grad

    return step


def mlp_setup():
    import torch

    import distrain

    x, labels, parameters = mlp_data()
    return {
        "distrain": mlp_step(distrain, x, labels, parameters),
        "peer": mlp_step(torch, x, labels, parameters),
        "floor": mlp_numpy_step(x, labels, parameters),
    }


def mlp_flops():
    """Forward 2*B*fan_in*fan_out per layer; backward twice that (grad input + grad weight)."""
    return 3 * 2 * MLP_BATCH * sum(a * b for a, b in itertools.pairwise(MLP_SIZES))


# --- context: the float32 matmul rate -------------------------------------------------------

MATMUL_SIZE = 1024


def matmul_setup():
    import numpy as np
    import torch

    import distrain

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE)).astype(np.float32) for _ in range(2))
    da, db = distrain.tensor(a), distrain.tensor(b)
    ta, tb = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
    return {"distrain": lambda: da.mm(db), "peer": lambda: ta.mm(tb), "floor": lambda: a @ b}


def main(argv=None):
    args = harness.command_line(__doc__, argv)  # sets the thread limit before anything imports numpy
    cases = [
        harness.Case("two_layer_net", two_layer_net_setup, target=0.75, flops=two_layer_net_flops(),
                     traffic=two_layer_net_traffic(), note="N=64 D_in=1000 H=100 D_out=10, fwd+bwd+SGD"),
        harness.Case("mlp_784_1024", mlp_setup, target=0.95, flops=mlp_flops(), traffic=mlp_traffic(),
                     note="784-1024-1024-10 + biases, relu, batch 256, cross_entropy, fwd+bwd+SGD"),
        harness.Case("matmul_f32_1024", matmul_setup, flops=2 * MATMUL_SIZE**3,
                     note="float32 1024x1024 @ 1024x1024, no autograd: the BLAS rate"),
    ]
    harness.run_selected(cases, args, RESULTS_DIR)


if __name__ == "__main__":
    main()
