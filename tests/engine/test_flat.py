"""Flat parameter/gradient buffers and the ops that write gradients straight into them.

The oracle is the same computation on unpacked parameters (and torch for the values):
packing must never change a number, however a parameter is used.
"""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
from distrain.engine.flat import FlatParameters, pack_parameters


def twin_models(build):
    distrain.manual_seed(0)
    packed, plain = build(), build()
    plain.load_state_dict(packed.state_dict())
    (flat,) = pack_parameters(packed.parameters())
    return packed, plain, flat


def assert_same_grads(packed, plain):
    for (name, a), (_, b) in zip(packed.named_parameters(), plain.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)


def test_packed_parameters_are_views_of_one_buffer_in_order():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    before = [p.detach().clone() for p in model.parameters()]
    (flat,) = pack_parameters(model.parameters())
    assert flat.numel() == sum(p.numel() for p in model.parameters())
    for parameter, value in zip(model.parameters(), before):
        offset, size = flat.segment(parameter)
        np.testing.assert_array_equal(flat.data[offset:offset + size], value.numpy().ravel())
        assert np.shares_memory(parameter.detach().numpy(), flat.data)


class TiedTwice(nn.Module):
    """One Linear applied twice: its weight's gradient has two contributions in one backward."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(5, 5)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, image):
        return self.layer(self.layer(x).relu()).sum() + self.conv(self.conv(image)).square().sum()


def test_a_parameter_used_twice_gets_both_contributions():
    packed, plain, flat = twin_models(TiedTwice)
    x, image = distrain.randn(3, 5), distrain.randn(2, 2, 6, 6)
    packed(x, image).backward()
    plain(x, image).backward()
    assert_same_grads(packed, plain)
    assert packed.layer.weight.grad is packed.layer.weight._flat_grad


def test_gradients_accumulate_over_two_backwards_and_zero_grad_resets():
    packed, plain, flat = twin_models(TiedTwice)
    for _ in range(2):
        x, image = distrain.randn(3, 5), distrain.randn(2, 2, 6, 6)
        packed(x, image).backward()
        plain(x, image).backward()
    assert_same_grads(packed, plain)
    packed.zero_grad()
    plain.zero_grad()
    x, image = distrain.randn(3, 5), distrain.randn(2, 2, 6, 6)
    packed(x, image).backward()
    plain(x, image).backward()
    assert_same_grads(packed, plain)


def test_autograd_grad_on_packed_parameters_leaves_grad_untouched_and_is_not_a_view():
    packed, plain, flat = twin_models(TiedTwice)
    x, image = distrain.randn(3, 5), distrain.randn(2, 2, 6, 6)
    (ours,) = distrain.autograd.grad(packed(x, image), [packed.layer.weight])
    (theirs,) = distrain.autograd.grad(plain(x, image), [plain.layer.weight])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    assert packed.layer.weight.grad is None
    assert not np.shares_memory(ours.numpy(), flat.grad)


def test_a_hook_on_a_packed_parameter_sees_and_may_replace_the_gradient():
    packed, plain, flat = twin_models(lambda: nn.Linear(4, 3))
    seen = []
    packed.weight.register_hook(lambda grad: seen.append(grad.clone()) or grad * 2)
    x = distrain.randn(6, 4)
    packed(x).sum().backward()
    plain(x).sum().backward()
    np.testing.assert_allclose(seen[0].numpy(), plain.weight.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(packed.weight.grad.numpy(), 2 * plain.weight.grad.numpy(), rtol=1e-6)
    assert np.shares_memory(packed.weight.grad.numpy(), flat.grad)


def test_an_error_in_backward_does_not_leave_the_parameter_stuck():
    packed, plain, flat = twin_models(lambda: nn.Linear(4, 3))
    x = distrain.randn(6, 4)

    class Boom(distrain.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            return value * 1.0

        @staticmethod
        def backward(ctx, grad):
            raise RuntimeError("boom")

    out = packed(x)
    loss = out.sum() + Boom.apply(out).sum()
    with pytest.raises(RuntimeError, match="boom"):
        loss.backward()
    packed.zero_grad()
    packed(x).sum().backward()
    plain(x).sum().backward()
    assert_same_grads(packed, plain)


def test_packed_cnn_training_matches_torch():
    def build(lib):
        return lib.nn.Sequential(lib.nn.Conv2d(3, 4, 3, padding=1), lib.nn.ReLU(), lib.nn.MaxPool2d(2),
                                 lib.nn.Flatten(), lib.nn.Linear(4 * 4 * 4, 5))

    theirs = build(torch)
    ours = build(distrain)
    ours.load_state_dict({k: distrain.tensor(v.detach().numpy().copy()) for k, v in theirs.state_dict().items()})
    our_opt = distrain.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)  # packs the model
    their_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    assert isinstance(ours[0].weight._flat, FlatParameters)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.standard_normal((4, 3, 8, 8)).astype(np.float32), rng.integers(0, 5, 4)
        for model, opt, lib in ((ours, our_opt, distrain), (theirs, their_opt, torch)):
            opt.zero_grad()
            lib.nn.functional.cross_entropy(model(lib.tensor(x)), lib.tensor(y)).backward()
            opt.step()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


class RecomputeInBackward(distrain.autograd.Function):
    """Reentrant checkpointing: forward without a graph, backward recomputes and runs a nested backward."""

    @staticmethod
    def forward(ctx, fn, x):
        ctx.fn = fn
        ctx.save_for_backward(x)
        with distrain.no_grad():
            return fn(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        x = x.detach().requires_grad_()
        with distrain.enable_grad():
            out = ctx.fn(x)
        distrain.autograd.backward(out, grad)
        return None, x.grad


def test_a_nested_backward_through_a_packed_parameter_keeps_both_contributions():
    rng = np.random.default_rng(0)
    weight, x = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    grads = []
    for packed in (True, False):
        w = nn.Parameter(distrain.tensor(weight))
        if packed:
            pack_parameters([w])
        h = nn.functional.linear(distrain.tensor(x), w)
        h = RecomputeInBackward.apply(lambda t: nn.functional.linear(t, w).tanh(), h)
        nn.functional.linear(h, w).square().sum().backward()
        grads.append(w.grad.numpy().copy())
    tw = torch.tensor(weight, requires_grad=True)
    th = torch.nn.functional.linear(torch.tensor(x), tw)
    torch.nn.functional.linear(torch.nn.functional.linear(th, tw).tanh(), tw).square().sum().backward()
    np.testing.assert_allclose(grads[0], tw.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[1], tw.grad.numpy(), rtol=1e-5, atol=1e-5)
