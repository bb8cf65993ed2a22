"""conv2d with the bias folded into its GEMMs (NOTE [ Bias in the GEMM ], ops/conv.py) against torch.

Every combination of which of input, weight and bias need a gradient takes its own
branch of the backward, and packed parameters write into their flat gradient slots:
each is compared with torch, over two backwards (the second accumulates).
"""
import itertools

import numpy as np
import pytest
import torch

import distrain
from distrain.engine.flat import pack_parameters


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("needs", [n for n in itertools.product([False, True], repeat=3) if any(n)], ids=str)
def test_conv2d_gradients_for_each_requires_grad_combination(needs, packed):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4, 6, 5)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    upstream = rng.standard_normal((3, 5, 6, 5))
    results = {}
    for lib in (torch, distrain):
        conv = lib.nn.Conv2d(4, 5, 3, padding=1).double()
        with lib.no_grad():
            conv.weight.copy_(lib.tensor(w))
            conv.bias.copy_(lib.tensor(b))
        conv.weight.requires_grad_(needs[1])
        conv.bias.requires_grad_(needs[2])
        if packed and lib is distrain:
            pack_parameters(conv.parameters())
        xt = lib.tensor(x, requires_grad=needs[0])
        for _ in range(2):
            out = conv(xt)
            (out * lib.tensor(upstream)).sum().backward()
        results[lib.__name__] = [out.detach().numpy()] + [
            t.grad.numpy() if t.grad is not None else None for t in (xt, conv.weight, conv.bias)]
    for got, want in zip(results["distrain"], results["torch"]):
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
