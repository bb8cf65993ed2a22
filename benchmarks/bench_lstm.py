"""An LSTM language model's training step: distrain beside PyTorch on the CPU.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_lstm.py                 # all cores, 10 s
    python benchmarks/bench_lstm.py --threads 1 --seconds 5
    python benchmarks/bench_lstm.py --record        # append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl

Case (the word_language_model shape; both models built from the same weights; each step is
zero_grad, forward, cross-entropy, backward, SGD step):

  lstm_lm_step   Embedding(1000, 256) -> LSTM(256, 256, num_layers=2) -> Linear(256, 1000),
                 sequence 35, batch 20 (time-major), cross-entropy over the 700 next tokens,
                 SGD lr 0.1.                                        target distrain/peer <= 1.5

How the harness alternates contenders and sets threads: benchmarks/harness.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_nn_cpu  # paired_setup: the same weights in both frameworks, the same step
import harness  # stdlib only: numpy is imported after the thread limit is set

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
VOCABULARY, WIDTH, LAYERS, STEPS, BATCH = 1000, 256, 2, 35, 20


def language_model(lib):
    nn = lib.nn

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCABULARY, WIDTH)
            self.lstm = nn.LSTM(WIDTH, WIDTH, LAYERS)
            self.decoder = nn.Linear(WIDTH, VOCABULARY)

        def forward(self, tokens):
            output, _ = self.lstm(self.embedding(tokens))
            return self.decoder(output).reshape(STEPS * BATCH, VOCABULARY)

    return LanguageModel()


def sgd(lib, model):
    return lib.optim.SGD(model.parameters(), lr=0.1)


def token_batch():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, VOCABULARY, (STEPS, BATCH)), rng.integers(0, VOCABULARY, STEPS * BATCH)


def lstm_flops():
    tokens = STEPS * BATCH
    lstm = LAYERS * 2 * 2 * tokens * WIDTH * 4 * WIDTH  # input and hidden GEMMs per layer
    decoder = 2 * tokens * WIDTH * VOCABULARY
    return 3 * (lstm + decoder)  # forward, and backward's two GEMMs per forward GEMM


def main(argv=None):
    args = harness.command_line(__doc__, argv)  # sets the thread limit before anything imports numpy
    cases = [harness.Case("lstm_lm_step", lambda: bench_nn_cpu.paired_setup(language_model, sgd, token_batch), target=1.5,
                          flops=lstm_flops(),
                          note="Embedding 1000x256, LSTM 256-256 x2 layers, Linear 256->1000; seq 35, batch 20; "
                               "CE; SGD")]
    harness.run_selected(cases, args, RESULTS_DIR)


if __name__ == "__main__":
    main()
