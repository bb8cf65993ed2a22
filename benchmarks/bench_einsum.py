"""einsum on the CPU: distrain beside PyTorch, forward and backward, for the contractions programs write.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_einsum.py --threads 1 --seconds 3
    python benchmarks/bench_einsum.py --record         # ... to benchmarks/results/<date>_<cpu>_<cores>c.jsonl

Cases (each step: einsum forward, .sum().backward() into every operand, float32):

  attention_scores  "bhqd,bhkd->bhqk", (8, 4, 64, 32) x (8, 4, 64, 32): a batched product that
                    NumPy's own einsum runs without BLAS ("floor" is numpy.einsum, forward only)
  matmul_256        "ij,jk->ik", 256 x 256 matrices
  bilinear          "bn,anm,bm->ba", (32, 64), (16, 64, 64), (32, 64): three operands, greedy order
Target for each: distrain/peer <= 1.5.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only: numpy is imported after the thread limit is set

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

CASES = {
    "attention_scores": ("bhqd,bhkd->bhqk", [(8, 4, 64, 32), (8, 4, 64, 32)]),
    "matmul_256": ("ij,jk->ik", [(256, 256), (256, 256)]),
    "bilinear": ("bn,anm,bm->ba", [(32, 64), (16, 64, 64), (32, 64)]),
}


def setup_for(name):
    def setup():
        import numpy as np
        import torch

        import distrain

        equation, shapes = CASES[name]
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
        steps = {"floor": lambda: np.einsum(equation, *arrays)}
        for key, lib in (("distrain", distrain), ("peer", torch)):
            operands = [lib.tensor(array.copy(), requires_grad=True) for array in arrays]

            def step(lib=lib, operands=operands):
                lib.einsum(equation, *operands).sum().backward()
                for operand in operands:
                    operand.grad = None

            steps[key] = step
        return steps

    return setup


def main(argv=None):
    args = harness.command_line(__doc__, argv)  # sets the thread limit before anything imports numpy
    cases = [harness.Case(name, setup_for(name), target=1.5, note=f"{CASES[name][0]}, fwd+bwd, float32")
             for name in CASES]
    harness.run_selected(cases, args, RESULTS_DIR)


if __name__ == "__main__":
    main()
