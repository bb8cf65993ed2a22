"""Sequential runs ReLU -> MaxPool2d as max-pool first (NOTE [ ReLU after max-pool ]): same numbers as torch
and as the unfused order, and no fusion wherever the ReLU's output or its in-place write could be observed.
"""
import numpy as np
import pytest
import torch

import distrain
from distrain.engine.nn import relu_pool_fusion


def _model(lib, inplace=False, return_indices=False):
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.MaxPool2d(2, return_indices=return_indices))


def _input():
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))
    x[0, :, :2, :2] = -5.0  # windows whose maximum is negative after the conv: zero gradient either way
    return x


def _run(lib, model, x, upstream):
    xt = lib.tensor(x, requires_grad=True)
    out = model(xt)
    (out * lib.tensor(upstream)).sum().backward()
    return [out.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]


@pytest.fixture
def fusions(monkeypatch):
    calls = []
    original = relu_pool_fusion.pool_then_relu

    def counting(relu, pool, x):
        calls.append(x.shape)
        return original(relu, pool, x)

    monkeypatch.setattr(relu_pool_fusion, "pool_then_relu", counting)
    return calls


@pytest.mark.parametrize("inplace", [False, True])
def test_fused_sequential_matches_torch_and_the_unfused_order(inplace, fusions):
    torch.manual_seed(0)
    reference = _model(torch, inplace).double()
    model = _model(distrain, inplace).double()
    model.load_state_dict({k: distrain.tensor(v.detach().numpy()) for k, v in reference.state_dict().items()})
    x, upstream = _input(), np.random.default_rng(1).standard_normal((2, 3, 3, 3))
    got = _run(distrain, model, x, upstream)
    assert fusions == [(2, 3, 6, 6)]  # the fused order ran, on the conv's output
    for value, want in zip(got, _run(torch, reference, x, upstream)):
        np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-12)
    model.zero_grad()
    unfused = [module for module in model]  # the same modules called one by one: the unfused order
    xt = distrain.tensor(x, requires_grad=True)
    out = xt
    for module in unfused:
        out = module(out)
    (out * distrain.tensor(upstream)).sum().backward()
    for value, want in zip(got, [out.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]):
        assert np.array_equal(value, want)  # equal values (a zero gradient's sign may differ, see the NOTE)


def test_no_fusion_where_the_relu_output_is_observed(fusions):
    model = _model(distrain)
    seen = []
    model[1].register_forward_hook(lambda module, args, output: seen.append(output.shape))
    model(distrain.tensor(_input().astype(np.float32)))
    assert seen == [(2, 3, 6, 6)] and fusions == []


def test_no_fusion_when_the_pool_returns_indices_and_they_match_torch(fusions):
    torch.manual_seed(0)
    reference = _model(torch, return_indices=True).double()
    model = _model(distrain, return_indices=True).double()
    model.load_state_dict({k: distrain.tensor(v.detach().numpy()) for k, v in reference.state_dict().items()})
    _, indices = model(distrain.tensor(_input()))
    assert fusions == []
    np.testing.assert_array_equal(indices.numpy(), reference(torch.tensor(_input()))[1].numpy())


def test_inplace_relu_first_in_a_sequential_still_overwrites_the_callers_tensor(fusions):
    x = _input()
    results = []
    for lib in (torch, distrain):
        xt = lib.tensor(x.copy())
        lib.nn.Sequential(lib.nn.ReLU(inplace=True), lib.nn.MaxPool2d(2))(xt)
        results.append(xt.numpy())
    assert fusions == []
    np.testing.assert_array_equal(results[1], results[0])
    assert (results[1] >= 0).all()
