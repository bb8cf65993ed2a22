"""multinomial, bernoulli, normal and the in-place random fills: the same shapes, dtypes and
distributions as PyTorch's (frequencies and moments over many draws; the numbers themselves come
from another bit generator), repeatable under manual_seed, and PyTorch's refusals."""
import numpy as np
import pytest
import torch

import distrain

WEIGHTS = np.array([[0.1, 0.0, 0.6, 0.3], [2.0, 1.0, 1.0, 0.0]])


@pytest.mark.parametrize("replacement", [True, False])
def test_multinomial_shapes_dtypes_and_frequencies(replacement):
    distrain.manual_seed(0)
    mine = distrain.multinomial(distrain.tensor(WEIGHTS), 2, replacement=replacement)
    theirs = torch.multinomial(torch.tensor(WEIGHTS), 2, replacement=replacement)
    assert tuple(mine.shape) == tuple(theirs.shape) and mine.dtype == distrain.int64 and theirs.dtype == torch.int64
    # first draws follow the normalised weights; zero weights are never drawn
    firsts = distrain.multinomial(distrain.tensor(WEIGHTS[0]).expand(20000, 4).contiguous(), 1, replacement)
    frequencies = np.bincount(firsts.numpy().reshape(-1), minlength=4) / 20000
    np.testing.assert_allclose(frequencies, WEIGHTS[0] / WEIGHTS[0].sum(), atol=0.015)
    if not replacement:
        draws = distrain.multinomial(distrain.tensor(WEIGHTS), 3).numpy()
        assert all(len(set(row)) == 3 for row in draws) and 1 not in draws[0] and 3 not in draws[1]
        every = distrain.multinomial(distrain.tensor(WEIGHTS), 4).numpy()  # zero weights come last
        assert every[0, 3] == 1 and every[1, 3] == 3


def test_multinomial_is_repeatable_under_manual_seed():
    draws = []
    for _ in range(2):
        distrain.manual_seed(7)
        draws.append(distrain.multinomial(distrain.tensor(WEIGHTS[1]), 10, replacement=True).tolist())
    assert draws[0] == draws[1]


@pytest.mark.parametrize("call, message", [
    (lambda lib: lib.multinomial(lib.tensor(WEIGHTS), 5), "5 samples without replacement from 4 categories"),
    (lambda lib: lib.multinomial(lib.tensor([[-1.0, 2.0]]), 1), "non-negative"),
    (lambda lib: lib.multinomial(lib.zeros(2, 3, dtype=lib.float64), 1), "positive sum"),
    (lambda lib: lib.multinomial(lib.ones(2, 2, 2), 1), "1-D or 2-D"),
])
def test_multinomial_refuses_what_torch_refuses(call, message):
    with pytest.raises(distrain.DistrainError, match=message):
        call(distrain)
    with pytest.raises(RuntimeError):
        call(torch)


FILLS = {
    "normal_": ((2.0, 0.5), lambda x: (x.mean(), x.std())),
    "uniform_": ((-1.0, 3.0), lambda x: (x.min() >= -1, x.max() < 3, x.mean())),
    "exponential_": ((2.0,), lambda x: (x.min() >= 0, x.mean())),
    "bernoulli_": ((0.3,), lambda x: (set(np.unique(x)) <= {0.0, 1.0}, x.mean())),
    "random_": ((3, 8), lambda x: (x.min() >= 3, x.max() <= 7, x.mean())),
}


@pytest.mark.parametrize("name", FILLS)
def test_in_place_fills_match_torch_in_distribution(name):
    args, summary = FILLS[name]
    distrain.manual_seed(1)
    torch.manual_seed(1)
    mine, theirs = distrain.empty(40000), torch.empty(40000)
    assert getattr(mine, name)(*args) is mine
    getattr(theirs, name)(*args)
    for a, b in zip(summary(mine.numpy()), summary(theirs.numpy())):
        np.testing.assert_allclose(float(a), float(b), atol=0.05, rtol=0.03)


def test_fills_respect_the_graph_rules():
    leaf = distrain.ones(3, requires_grad=True)
    with pytest.raises(distrain.AutogradError, match="leaf"):
        leaf.normal_()
    with distrain.no_grad():
        leaf.uniform_()
    assert float(leaf.max()) < 1.0


def test_bernoulli_and_normal_functions():
    distrain.manual_seed(2)
    probabilities = distrain.tensor([0.0, 1.0, 0.25]).expand(20000, 3)
    draws = distrain.bernoulli(probabilities)
    assert draws.dtype == distrain.float32 and tuple(draws.shape) == (20000, 3)
    np.testing.assert_allclose(draws.numpy().mean(0), [0.0, 1.0, 0.25], atol=0.015)
    around = distrain.normal(distrain.tensor([0.0, 10.0]).expand(20000, 2), distrain.tensor([1.0, 0.1]))
    np.testing.assert_allclose(around.numpy().mean(0), [0.0, 10.0], atol=0.03)
    np.testing.assert_allclose(around.numpy().std(0), [1.0, 0.1], rtol=0.03)
    assert tuple(distrain.normal(1.0, 2.0, (3, 4)).shape) == tuple(torch.normal(1.0, 2.0, (3, 4)).shape)
