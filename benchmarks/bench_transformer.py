"""A TransformerEncoderLayer training step: distrain.nn beside torch.nn, on the CPU.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_transformer.py                  # all cores, 10 s per case
    python benchmarks/bench_transformer.py --record         # append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl

Cases (both layers start from the same weights; a step is zero_grad, forward, loss, backward,
SGD step):

  transformer_encoder_layer_step
        TransformerEncoderLayer(d_model 256, 4 heads, dim_feedforward 1024, dropout 0.1,
        batch_first), sequence 64, batch 32, in training mode; loss = MSE against a fixed
        random target; SGD(lr=0.01).                              target distrain/peer <= 1.5
  transformer_encoder_layer_step_no_dropout
        the same with dropout 0 (the attention and the feed-forward without any mask draws).

How the harness alternates contenders and sets threads: benchmarks/harness.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only: numpy is imported after the thread limit is set

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
D_MODEL, HEADS, FEEDFORWARD, LENGTH, BATCH = 256, 4, 1024, 64, 32


def layer_step_setup(dropout):
    import numpy as np
    import torch

    import distrain

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    source = rng.standard_normal((BATCH, LENGTH, D_MODEL)).astype(np.float32)
    target = rng.standard_normal((BATCH, LENGTH, D_MODEL)).astype(np.float32)
    layers = {lib: lib.nn.TransformerEncoderLayer(D_MODEL, HEADS, FEEDFORWARD, dropout=dropout, batch_first=True)
              for lib in (torch, distrain)}
    layers[distrain].load_state_dict({name: distrain.tensor(value.detach().numpy().copy())
                                      for name, value in layers[torch].state_dict().items()})
    steps = {}
    for name, lib in (("distrain", distrain), ("peer", torch)):
        layer = layers[lib]
        layer.train()
        optimizer = lib.optim.SGD(layer.parameters(), lr=0.01)
        x, y = lib.tensor(source.copy()), lib.tensor(target.copy())
        steps[name] = training_step(lib, layer, optimizer, x, y)
    return steps


def training_step(lib, layer, optimizer, x, y):
    mse_loss = lib.nn.functional.mse_loss

    def step():
        optimizer.zero_grad()
        mse_loss(layer(x), y).backward()
        optimizer.step()

    return step


def layer_flops():
    """Forward GEMMs of one layer (projections, attention, feed-forward); backward is about twice that."""
    tokens = BATCH * LENGTH
    projections = 2 * tokens * D_MODEL * (4 * D_MODEL)
    attention = 2 * 2 * BATCH * LENGTH * LENGTH * D_MODEL
    feed_forward = 2 * 2 * tokens * D_MODEL * FEEDFORWARD
    return 3 * (projections + attention + feed_forward)


def main(argv=None):
    args = harness.command_line(__doc__, argv)  # sets the thread limit before anything imports numpy
    shape = f"d_model {D_MODEL}, {HEADS} heads, ff {FEEDFORWARD}, seq {LENGTH}, batch {BATCH}, batch_first, MSE, SGD"
    cases = [
        harness.Case("transformer_encoder_layer_step", lambda: layer_step_setup(0.1), target=1.5, flops=layer_flops(),
                     note=f"TransformerEncoderLayer train step, {shape}, dropout 0.1"),
        harness.Case("transformer_encoder_layer_step_no_dropout", lambda: layer_step_setup(0.0), target=1.5,
                     flops=layer_flops(), note=f"TransformerEncoderLayer train step, {shape}, dropout 0"),
    ]
    harness.run_selected(cases, args, RESULTS_DIR)


if __name__ == "__main__":
    main()
