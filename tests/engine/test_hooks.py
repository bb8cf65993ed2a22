"""Tensor hooks: `register_hook` (leaf and non-leaf) and `register_post_accumulate_grad_hook`.

Each scenario is written once for a framework module and run on distrain and torch;
hook call counts and the gradients the hooks see are compared with PyTorch 2.13.
"""
import numpy as np
import pytest
import torch

import distrain


def host(t):
    return t.detach().cpu().numpy()


def to_np(t):
    if isinstance(t, torch.Tensor):
        return t.detach().numpy().copy()
    return host(t).copy()


def assert_lists_close(ours, theirs, rtol=1e-5, atol=1e-6):
    assert len(ours) == len(theirs), f"hook fired {len(ours)} times, torch fires it {len(theirs)} times"
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def run_both(scenario, *arrays, device="cpu"):
    """Run scenario(lib, *leaves) on distrain and torch; it returns (seen_list, leaves)."""
    ours = scenario(distrain, *[distrain.tensor(a, device=device, requires_grad=True) for a in arrays])
    theirs = scenario(torch, *[torch.tensor(a, requires_grad=True) for a in arrays])
    return ours, theirs


def compare_grads(our_leaves, their_leaves):
    for x, xt in zip(our_leaves, their_leaves):
        if xt.grad is None:
            assert x.grad is None
        else:
            assert x.grad is not None
            np.testing.assert_allclose(host(x.grad), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- register_hook

def leaf_hook_fan_out(lib, x):
    seen = []
    x.register_hook(lambda g: seen.append(to_np(g)))
    (x * 2 + x * 3 + x.sin() * x).sum().backward()
    return seen, [x]


def nonleaf_hook_fan_out(lib, x):
    seen = []
    h = x * 2
    h.register_hook(lambda g: seen.append(to_np(g)))
    (h * h + h.exp() + h).sum().backward()
    return seen, [x]


def leaf_hook_replaces(lib, x):
    seen = []
    x.register_hook(lambda g: g * 10)
    (x * x).sum().backward()
    return seen, [x]


def nonleaf_hook_replaces(lib, x, y):
    seen = []
    h = x * y
    h.register_hook(lambda g: g * 10 + 1)
    (h.tanh() * 3).sum().backward()
    return seen, [x, y]


def nonleaf_hook_replacement_only_upstream(lib, x, y):
    # h feeds z and the loss directly; the replacement changes what flows into h's producer only
    seen = []
    h = x * 2
    z = h * y
    z.register_hook(lambda g: g * 0)
    (z.sum() + (h * h).sum()).backward()
    return seen, [x, y]


def hooks_chain_in_order(lib, x):
    seen = []

    def first(g):
        seen.append(to_np(g))
        return g + 1

    def second(g):
        seen.append(to_np(g))
        return g * 2

    x.register_hook(first)
    x.register_hook(second)
    (x * 3).sum().backward()
    return seen, [x]


def hook_returning_none_changes_nothing(lib, x):
    seen = []
    h = x.exp()
    h.register_hook(lambda g: seen.append(to_np(g)))
    x.register_hook(lambda g: seen.append(to_np(g)))
    (h * x).sum().backward()
    return seen, [x]


def removed_hook_is_not_called(lib, x):
    seen = []
    handle = x.register_hook(lambda g: seen.append(to_np(g)) or g * 100)
    kept = x.register_hook(lambda g: seen.append(to_np(g) + 1000))
    handle.remove()
    handle.remove()  # twice is harmless
    (x * x).sum().backward()
    kept.remove()
    (x * 3).sum().backward()
    return seen, [x]


def nonleaf_hook_removed(lib, x):
    seen = []
    h = x * 5
    handle = h.register_hook(lambda g: g * 0)
    handle.remove()
    h.sum().backward()
    return seen, [x]


def hook_fires_each_backward(lib, x):
    seen = []
    h = x.sin()
    h.register_hook(lambda g: seen.append(to_np(g)))
    x.register_hook(lambda g: seen.append(to_np(g)))
    loss = (h * h).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    (x * 4).sum().backward()
    return seen, [x]


def hook_on_two_output_split(lib, x):
    seen = []
    a, b = x.split(2)
    a.register_hook(lambda g: seen.append(to_np(g)))
    b.register_hook(lambda g: g * 3)
    (a * b).sum().backward()
    return seen, [x]


HOOK_SCENARIOS = {
    "leaf_hook_fan_out": (leaf_hook_fan_out, 1),
    "nonleaf_hook_fan_out": (nonleaf_hook_fan_out, 1),
    "leaf_hook_replaces": (leaf_hook_replaces, 1),
    "nonleaf_hook_replaces": (nonleaf_hook_replaces, 2),
    "nonleaf_hook_replacement_only_upstream": (nonleaf_hook_replacement_only_upstream, 2),
    "hooks_chain_in_order": (hooks_chain_in_order, 1),
    "hook_returning_none_changes_nothing": (hook_returning_none_changes_nothing, 1),
    "removed_hook_is_not_called": (removed_hook_is_not_called, 1),
    "nonleaf_hook_removed": (nonleaf_hook_removed, 1),
    "hook_fires_each_backward": (hook_fires_each_backward, 1),
    "hook_on_two_output_split": (hook_on_two_output_split, 1),
}


@pytest.mark.parametrize("case", sorted(HOOK_SCENARIOS))
def test_register_hook_matches_torch(case, device, rng):
    scenario, n_inputs = HOOK_SCENARIOS[case]
    shape = (4,)
    arrays = [rng.standard_normal(shape).astype(np.float32) for _ in range(n_inputs)]
    (seen, our_leaves), (seen_t, their_leaves) = run_both(scenario, *arrays, device=device)
    assert_lists_close(seen, seen_t)
    compare_grads(our_leaves, their_leaves)


def test_leaf_hook_sees_summed_gradient_closed_form():
    a = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    x = distrain.tensor(a, requires_grad=True)
    calls = []
    x.register_hook(lambda g: calls.append(host(g).copy()))
    (x * 2 + x * 3).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], [5.0, 5.0, 5.0])


def test_hooks_apply_to_autograd_grad_results():
    x = distrain.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: g * 10)
    (g,) = distrain.autograd.grad((x * x).sum(), x)
    xt = torch.tensor([1.0, 2.0], requires_grad=True)
    xt.register_hook(lambda g: g * 10)
    (gt,) = torch.autograd.grad((xt * xt).sum(), xt)
    np.testing.assert_allclose(host(g), gt.numpy())
    assert x.grad is None


def test_hook_on_unreached_non_leaf_does_not_fire():
    x = distrain.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    h = x * 2
    h.register_hook(lambda g: calls.append(1))
    (x * 3).sum().backward()
    assert calls == []
    np.testing.assert_array_equal(host(x.grad), [3.0, 3.0])


def test_register_hook_on_tensor_not_requiring_grad_raises():
    with pytest.raises(RuntimeError):
        torch.ones(2).register_hook(lambda g: g)
    with pytest.raises(distrain.DistrainError):
        distrain.ones(2).register_hook(lambda g: g)


def test_hook_handle_is_context_manager():
    x = distrain.tensor([1.0], requires_grad=True)
    with x.register_hook(lambda g: g * 7):
        (x * 1).sum().backward()
    (x * 1).sum().backward()
    np.testing.assert_allclose(host(x.grad), [8.0])


# ----------------------------------------------------------------------------- post-accumulate-grad hooks

def post_hook_fan_out(lib, w, v):
    labelled = []
    for name, p in (("w", w), ("v", v)):
        p.register_post_accumulate_grad_hook(lambda t, name=name: labelled.append((name, to_np(t.grad))))
    h = w * v
    loss = (h * w + h.sin() + v * 2 + w.exp()).sum()
    loss.backward()
    # the order between the two leaves is not compared, only the count and the values
    return [g for _, g in sorted(labelled, key=lambda item: item[0])], [w, v]


def post_hook_sees_accumulated_total(lib, w, v):
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(to_np(t.grad)))
    for k in range(3):
        ((w * v * (k + 1)).tanh() + w * w).sum().backward()
    return seen, [w, v]


def post_hook_removed(lib, w, v):
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(to_np(t.grad)))
    (w * v).sum().backward()
    handle.remove()
    (w * v).sum().backward()
    return seen, [w, v]


def post_hook_after_tensor_hook(lib, w, v):
    # the tensor hook's replacement is what is accumulated, and the post hook sees it
    seen = []
    w.register_hook(lambda g: g * 2)
    w.register_post_accumulate_grad_hook(lambda t: seen.append(to_np(t.grad)))
    (w * v + w).sum().backward()
    return seen, [w, v]


def post_hook_optimizer_step(lib, w, v):
    # the "optimizer in backward" pattern: update each parameter as soon as its grad is final
    seen = []

    def step(p):
        seen.append(to_np(p.grad))
        p.data -= 0.1 * p.grad.data
        p.grad.data.zero_()

    w.register_post_accumulate_grad_hook(step)
    v.register_post_accumulate_grad_hook(step)
    for _ in range(2):
        ((w * v).sin() * w).sum().backward()
    seen.append(to_np(w))
    seen.append(to_np(v))
    return seen, [w, v]


POST_SCENARIOS = {
    "post_hook_fan_out": post_hook_fan_out,
    "post_hook_sees_accumulated_total": post_hook_sees_accumulated_total,
    "post_hook_removed": post_hook_removed,
    "post_hook_after_tensor_hook": post_hook_after_tensor_hook,
    "post_hook_optimizer_step": post_hook_optimizer_step,
}


@pytest.mark.parametrize("case", sorted(POST_SCENARIOS))
def test_post_accumulate_grad_hook_matches_torch(case, device, rng):
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2)]
    (seen, our_leaves), (seen_t, their_leaves) = run_both(POST_SCENARIOS[case], *arrays, device=device)
    assert_lists_close(seen, seen_t)
    compare_grads(our_leaves, their_leaves)


def test_post_hook_fires_once_with_final_grad(rng):
    a = rng.standard_normal(3).astype(np.float32)
    w = distrain.tensor(a, requires_grad=True)
    calls = []

    def hook(t):
        assert t is w
        calls.append(host(t.grad).copy())

    w.register_post_accumulate_grad_hook(hook)
    # w reaches the loss along four paths; the hook must see their sum, once
    (w * 2 + w * w + w.exp() + (w * 3).sin()).sum().backward()
    assert len(calls) == 1
    expected = 2 + 2 * a + np.exp(a) + 3 * np.cos(3 * a)
    np.testing.assert_allclose(calls[0], expected, rtol=1e-5)
    np.testing.assert_allclose(host(w.grad), expected, rtol=1e-5)


def test_post_hook_not_fired_by_autograd_grad():
    w = distrain.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    distrain.autograd.grad((w * w).sum(), w)
    wt = torch.tensor([1.0, 2.0], requires_grad=True)
    calls_t = []
    wt.register_post_accumulate_grad_hook(lambda t: calls_t.append(1))
    torch.autograd.grad((wt * wt).sum(), wt)
    assert calls == calls_t == []


def test_post_hook_on_non_leaf_raises():
    w = distrain.tensor([1.0], requires_grad=True)
    with pytest.raises(distrain.DistrainError):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)


def test_post_hook_for_each_of_many_leaves(rng):
    arrays = [rng.standard_normal(2).astype(np.float32) for _ in range(6)]

    def scenario(lib, *params):
        counts = [0] * len(params)
        for i, p in enumerate(params):
            p.register_post_accumulate_grad_hook(lambda t, i=i: counts.__setitem__(i, counts[i] + 1))
        h = params[0]
        for p in params[1:]:
            h = (h * p).tanh() + p
        (h.sum() + params[0].sum()).backward()
        return counts, list(params)

    (counts, ours), (counts_t, theirs) = run_both(scenario, *arrays)
    assert counts_t == [1] * 6
    assert counts == counts_t
    compare_grads(ours, theirs)
