"""Autograd mechanics: accumulation, graph freeing, long chains, the version counter,
in-place ops inside the graph, fan-out, gradient memory ownership, grad mode,
`autograd.grad` (including higher order), `autograd.backward` and `gradcheck`.

Values are checked against PyTorch 2.13 or closed forms.
"""
import numpy as np
import pytest
import torch

import distrain
from distrain import autograd


def host(t):
    return t.detach().cpu().numpy()


def leaves(*arrays, device="cpu"):
    """The same float arrays as distrain and torch leaves requiring grad."""
    ours = [distrain.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    return ours, theirs


def close(ours, theirs, rtol=1e-5, atol=1e-6):
    assert ours is not None, "distrain gave no gradient where torch has one"
    np.testing.assert_allclose(host(ours), theirs.detach().numpy(), rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- accumulation

def test_backward_accumulates_across_calls(device, rng):
    a = rng.standard_normal((3, 2)).astype(np.float32)
    b = rng.standard_normal((2, 4)).astype(np.float32)
    (x, w), (xt, wt) = leaves(a, b, device=device)
    for step in range(3):
        ((x @ w).tanh() * (step + 1)).sum().backward()
        ((xt @ wt).tanh() * (step + 1)).sum().backward()
        close(x.grad, xt.grad)
        close(w.grad, wt.grad)
    assert x.grad.dtype == distrain.float32
    assert str(x.grad.device) == device
    assert x.grad.requires_grad is False
    assert x.grad.grad_fn is None


def test_existing_grad_accumulates_in_place(rng):
    a = rng.standard_normal(5).astype(np.float32)
    (w,), (wt,) = leaves(a)
    (w * w).sum().backward()
    grad_obj = w.grad
    alias = w.grad.numpy()
    (w * 3.0).sum().backward()
    (wt * wt).sum().backward()
    (wt * 3.0).sum().backward()
    assert w.grad is grad_obj
    assert np.shares_memory(alias, w.grad.numpy())
    np.testing.assert_allclose(alias, wt.grad.numpy(), rtol=1e-6)


def test_grad_is_not_reset_by_plain_forward(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (w,), _ = leaves(a)
    (w * 2).sum().backward()
    _ = w * 5  # a forward alone changes nothing
    np.testing.assert_array_equal(host(w.grad), [2.0, 2.0, 2.0])


MIXED_DTYPE_OPS = {
    "mul": lambda x, y: x * y,
    "add": lambda x, y: x + y,
    "sub_broadcast": lambda x, y: x - y[0:1],
    "div": lambda x, y: x / (y * y + 1),
    "mul_exp": lambda x, y: (x * y).exp(),
}


@pytest.mark.parametrize("case", sorted(MIXED_DTYPE_OPS))
@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("float64", "float32"), ("float16", "float64")])
def test_grad_dtype_is_the_leaf_dtype(case, dtypes, rng):
    a = rng.standard_normal(3)
    b = rng.standard_normal(3)
    x = distrain.tensor(a, dtype=getattr(distrain, dtypes[0]), requires_grad=True)
    y = distrain.tensor(b, dtype=getattr(distrain, dtypes[1]), requires_grad=True)
    xt = torch.tensor(a, dtype=getattr(torch, dtypes[0]), requires_grad=True)
    yt = torch.tensor(b, dtype=getattr(torch, dtypes[1]), requires_grad=True)
    MIXED_DTYPE_OPS[case](x, y).sum().backward()
    MIXED_DTYPE_OPS[case](xt, yt).sum().backward()
    assert xt.grad.dtype == getattr(torch, dtypes[0])
    assert x.grad.dtype == np.dtype(dtypes[0])
    assert y.grad.dtype == np.dtype(dtypes[1])
    tol = 1e-2 if "float16" in dtypes else 1e-5
    close(x.grad, xt.grad, rtol=tol, atol=tol)
    close(y.grad, yt.grad, rtol=tol, atol=tol)
    # a second backward still accumulates (in place, in the leaf's dtype)
    MIXED_DTYPE_OPS[case](x, y).sum().backward()
    MIXED_DTYPE_OPS[case](xt, yt).sum().backward()
    assert x.grad.dtype == np.dtype(dtypes[0])
    close(x.grad, xt.grad, rtol=tol, atol=tol)
    (gx,) = autograd.grad(MIXED_DTYPE_OPS[case](x, y).sum(), x)
    assert gx.dtype == np.dtype(dtypes[0])


def test_grad_setter_none_and_buffer_view():
    w = distrain.ones(3, requires_grad=True)
    wt = torch.ones(3, requires_grad=True)
    buf, buft = distrain.zeros(5), torch.zeros(5)
    w.grad = buf[1:4]  # a view into a flat buffer: backward accumulates into it
    wt.grad = buft[1:4]
    (w * 2).sum().backward()
    (wt * 2).sum().backward()
    np.testing.assert_array_equal(host(buf), buft.numpy())
    w.grad = None
    wt.grad = None
    (w * 3).sum().backward()
    (wt * 3).sum().backward()
    close(w.grad, wt.grad)
    np.testing.assert_array_equal(host(buf), buft.numpy())  # no longer attached


# ----------------------------------------------------------------------------- retain_graph / freed graphs

def test_retain_graph_allows_second_backward(device, rng):
    a = rng.standard_normal(4).astype(np.float32)
    (x,), (xt,) = leaves(a, device=device)
    y = (x * x.sin()).sum()
    yt = (xt * xt.sin()).sum()
    y.backward(retain_graph=True)
    y.backward()
    yt.backward(retain_graph=True)
    yt.backward()
    close(x.grad, xt.grad)


def test_second_backward_without_retain_graph_raises(rng):
    a = rng.standard_normal(4).astype(np.float32)
    (x,), (xt,) = leaves(a)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(distrain.AutogradError, match="retain_graph"):
        y.backward()
    # torch refuses too
    yt = (xt * xt).sum()
    yt.backward()
    with pytest.raises(RuntimeError):
        yt.backward()
    # the first backward's gradient is intact
    np.testing.assert_allclose(host(x.grad), 2 * a, rtol=1e-6)


def test_backward_frees_saved_tensors_unless_retained():
    import weakref

    x = distrain.ones(3, requires_grad=True)

    def build():
        a = x * 2  # only the graph (mul's saved inputs) keeps `a` alive after this returns
        return (a * a).sum(), weakref.ref(a)

    loss, ref = build()
    assert ref() is not None
    loss.backward(retain_graph=True)
    assert ref() is not None
    loss.backward()
    assert ref() is None
    np.testing.assert_array_equal(host(x.grad), [16.0, 16.0, 16.0])  # 2 * (8x) at x = 1


@pytest.mark.parametrize("how", ["backward", "grad"])
def test_create_graph_implies_retain_graph(how, rng):
    a = rng.standard_normal(3)
    (x,), (xt,) = leaves(a)
    y = (x.exp() * x).sum()
    yt = (xt.exp() * xt).sum()
    if how == "backward":
        y.backward(create_graph=True)
        x.grad = None
        y.backward()  # torch: retain_graph defaults to create_graph
        got = x.grad
    else:
        autograd.grad(y, x, create_graph=True)
        (got,) = autograd.grad(y, x)
    torch.autograd.grad(yt, xt, create_graph=True)
    (expected,) = torch.autograd.grad(yt, xt)
    close(got, expected, rtol=1e-12)


def test_backward_under_no_grad_still_computes_grads(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    y = (x.sin() * x).sum()
    yt = (xt.sin() * xt).sum()
    with distrain.no_grad():
        y.backward()
    with torch.no_grad():
        yt.backward()
    close(x.grad, xt.grad)
    assert distrain.is_grad_enabled()


def test_autograd_grad_frees_graph_unless_retained(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), _ = leaves(a)
    y = (x.exp() * x).sum()
    (g1,) = autograd.grad(y, x, retain_graph=True)
    (g2,) = autograd.grad(y, x)
    np.testing.assert_allclose(host(g1), host(g2))
    with pytest.raises(distrain.AutogradError):
        autograd.grad(y, x)


# ----------------------------------------------------------------------------- non-scalar roots

def test_backward_of_non_scalar_without_gradient_raises():
    x = distrain.ones(3, requires_grad=True)
    y = x * 2
    with pytest.raises(distrain.AutogradError):
        y.backward()
    assert x.grad is None


def test_backward_of_tensor_not_requiring_grad_raises():
    x = distrain.ones(3)
    with pytest.raises(distrain.AutogradError):
        x.sum().backward()


def test_backward_gradient_shape_mismatch_raises():
    x = distrain.ones(3, requires_grad=True)
    with pytest.raises(distrain.DistrainError):
        (x * 2).backward(distrain.ones(4))


@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 1, 3)])
def test_backward_with_gradient_matches_torch(shape, device, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    (x,), (xt,) = leaves(a, device=device)
    (x.sin() * x).backward(distrain.tensor(g, device=device))
    (xt.sin() * xt).backward(torch.tensor(g))
    close(x.grad, xt.grad)


def test_backward_on_one_element_non_scalar_is_implicit():
    x = distrain.tensor([[2.0]], requires_grad=True)
    (x * x).backward()
    np.testing.assert_allclose(host(x.grad), [[4.0]])


def test_autograd_backward_multiple_roots_matches_torch(rng):
    a = rng.standard_normal(3).astype(np.float32)
    g = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    autograd.backward([(x * x).sum(), x.exp()], [None, distrain.tensor(g)])
    torch.autograd.backward([(xt * xt).sum(), xt.exp()], [None, torch.tensor(g)])
    close(x.grad, xt.grad)


# ----------------------------------------------------------------------------- long chains

def test_ten_thousand_op_mul_chain():
    n = 10_000
    x = distrain.tensor(1.0, dtype=distrain.float64, requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0001
    assert y.dtype == distrain.float64
    y.backward()
    np.testing.assert_allclose(host(y), 1.0001**n, rtol=1e-9)
    np.testing.assert_allclose(host(x.grad), 1.0001**n, rtol=1e-9)


def test_ten_thousand_op_add_chain():
    n = 10_000
    x = distrain.tensor([0.5, -2.0], requires_grad=True)
    y = x
    for _ in range(n):
        y = y + 1
    y.sum().backward()
    np.testing.assert_allclose(host(y), [n + 0.5, n - 2.0])
    np.testing.assert_array_equal(host(x.grad), [1.0, 1.0])
    del y  # tearing the long graph down must not recurse either


def test_ten_thousand_op_chain_with_autograd_grad():
    n = 10_000
    x = distrain.tensor(0.3, dtype=distrain.float64, requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0001 + 0.0
    (g,) = autograd.grad(y, x)
    np.testing.assert_allclose(host(g), 1.0001**n, rtol=1e-9)


# ----------------------------------------------------------------------------- the version counter

SAVED_MODIFIED = {
    # name expected in the message: (build graph, modify in place, loss)
    "exp": lambda x: _modify_then_backward(x.exp(), lambda y: y.add_(1)),
    "tanh": lambda x: _modify_then_backward(x.tanh(), lambda y: y.mul_(2)),
    "sigmoid": lambda x: _modify_then_backward(x.sigmoid(), lambda y: y.zero_()),
    "sin": lambda x: _sin_input_modified(x),
    "mul": lambda x: _mul_input_modified(x),
    "exp_modified_under_no_grad": lambda x: _exp_modified_under_no_grad(x),
    "mul_constant_modified": lambda x: _mul_constant_modified(x),
    "mul_leaf_modified_under_no_grad": lambda x: _mul_leaf_modified_under_no_grad(x),
}


def _modify_then_backward(y, modify):
    modify(y)
    y.sum().backward()


def _sin_input_modified(x):
    a = x * 2
    b = a.sin()
    a.add_(1.0)  # sin saved a
    b.sum().backward()


def _mul_input_modified(x):
    a = x + 0
    b = a * x
    a.mul_(3.0)  # mul saved a to compute the gradient of x
    b.sum().backward()


def _exp_modified_under_no_grad(x):
    y = x.exp()
    with (distrain if isinstance(x, distrain.Tensor) else torch).no_grad():
        y.mul_(2)  # no_grad does not hide the change from the version counter
    y.sum().backward()


def _mul_constant_modified(x):
    c = (distrain if isinstance(x, distrain.Tensor) else torch).ones(3)
    y = x * c  # c is saved to compute the gradient of x
    c.mul_(2)  # c requires no grad, but its change still invalidates the graph
    y.sum().backward()


def _mul_leaf_modified_under_no_grad(w):
    # the classic mistake: an optimizer step between forward and backward
    z = w * (w + 1)
    with (distrain if isinstance(w, distrain.Tensor) else torch).no_grad():
        w.sub_(0.1)
    z.sum().backward()


@pytest.mark.parametrize("name", sorted(SAVED_MODIFIED))
def test_modified_saved_tensor_raises_naming_op(name, rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    with pytest.raises(distrain.AutogradError, match=f"(?i){name.split('_')[0]}"):
        SAVED_MODIFIED[name](x)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        SAVED_MODIFIED[name](xt)  # the same code is refused by torch


def test_modifying_saved_output_through_detach_raises(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    y = x.exp()
    y.detach().zero_()  # detach shares the version counter, as in torch
    with pytest.raises(distrain.AutogradError, match="(?i)exp"):
        y.sum().backward()
    yt = xt.exp()
    yt.detach().zero_()
    with pytest.raises(RuntimeError):
        yt.sum().backward()


def test_second_backward_through_shared_freed_subgraph_raises(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    h = x.exp()
    (h * 2).sum().backward()
    with pytest.raises(distrain.AutogradError, match="(?i)exp"):
        (h * 3).sum().backward()
    ht = xt.exp()
    (ht * 2).sum().backward()
    with pytest.raises(RuntimeError):
        (ht * 3).sum().backward()


def test_inplace_on_unsaved_tensor_is_fine(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    y = x + 1  # add saves nothing
    y.mul_(2)
    (y * y).sum().backward()
    yt = xt + 1
    yt.mul_(2)
    (yt * yt).sum().backward()
    close(x.grad, xt.grad)


# ----------------------------------------------------------------------------- in-place on non-leaves

NONLEAF_INPLACE = {
    "mul_scalar": lambda w, c: _ip(w * 2, lambda y: y.mul_(3)),
    "mul_tensor": lambda w, c: _ip(w * 2, lambda y: y.mul_(w)),
    "add_tensor": lambda w, c: _ip(w * 2, lambda y: y.add_(w * w)),
    "sub_scalar": lambda w, c: _ip(w.sin(), lambda y: y.sub_(0.5)),
    "div_tensor": lambda w, c: _ip(w * w, lambda y: y.div_(c)),
    "clamp_": lambda w, c: _ip(w * 3, lambda y: y.clamp_(-0.5, 0.5)),
    "iadd": lambda w, c: _ip(w * 2, lambda y: y.__iadd__(w)),
    "imul": lambda w, c: _ip(w + 0, lambda y: y.__imul__(c)),
    "setitem_scalar": lambda w, c: _ip(w * 2, lambda y: y.__setitem__(0, 0.0)),
    "setitem_tensor": lambda w, c: _ip(w * 2, lambda y: y.__setitem__(slice(1, 3), w[0:2] * w[0:2])),
    "fill_": lambda w, c: _ip(w * 2, lambda y: y.fill_(1.0)),
    "zero_then_add": lambda w, c: _ip(w * 2, lambda y: y.zero_().add_(w)),
    "copy_": lambda w, c: _ip(w * 2, lambda y: y.copy_(w.sin())),
}


def _ip(y, modify):
    returned = modify(y)
    return y, y if returned is None else returned  # __setitem__ returns None


@pytest.mark.parametrize("case", sorted(NONLEAF_INPLACE))
def test_inplace_on_non_leaf_matches_torch(case, device, rng):
    a = rng.standard_normal(4).astype(np.float32)
    c = (rng.random(4) + 0.5).astype(np.float32)
    weights = rng.standard_normal(4).astype(np.float32)
    (w,), (wt,) = leaves(a, device=device)
    y, returned = NONLEAF_INPLACE[case](w, distrain.tensor(c, device=device))
    yt, _ = NONLEAF_INPLACE[case](wt, torch.tensor(c))
    assert returned is y
    assert y.requires_grad and not y.is_leaf
    close(y, yt)
    (y * distrain.tensor(weights, device=device)).sum().backward()
    (yt * torch.tensor(weights)).sum().backward()
    close(w.grad, wt.grad)


VIEW_INPLACE = {
    "slice_mul_": lambda y: y[1:3].mul_(5.0),
    "row_add_tensor": lambda y: y[0].add_(y[1] * 2),
    "view_fill_": lambda y: y.view(-1)[0:3].fill_(0.5),
    "transpose_mul_": lambda y: y.t()[0].mul_(-1.0),
    "column_iadd": lambda y: y[:, 0].__iadd__(y[:, 1].exp() + 1.0),
    "setitem_on_view": lambda y: y[1].__setitem__(slice(0, 2), y[0, 1:3].exp()),
    "two_writes": lambda y: (y[0].mul_(3.0), y[:, 1].add_(1.0)),
}


@pytest.mark.parametrize("case", sorted(VIEW_INPLACE))
def test_inplace_on_view_of_non_leaf_matches_torch(case, rng):
    """Writing through a view rebases the base's graph, as in torch: values and gradients match."""
    a = rng.standard_normal((3, 4)).astype(np.float32)
    weights = rng.standard_normal((3, 4)).astype(np.float32)
    (w,), (wt,) = leaves(a)
    y = w * 2
    yt = wt * 2
    VIEW_INPLACE[case](yt)
    VIEW_INPLACE[case](y)
    close(y, yt)
    (y * distrain.tensor(weights)).sum().backward()
    (yt * torch.tensor(weights)).sum().backward()
    close(w.grad, wt.grad)


def test_writing_a_region_another_op_saved_is_detected_like_torch():
    """y[:, 1] and y[:, 2] share y's version counter: mul saved them, the write bumps it."""
    w = distrain.ones(3, 4, requires_grad=True)
    wt = torch.ones(3, 4, requires_grad=True)
    for lib, leaf in ((distrain, w), (torch, wt)):
        y = leaf * 2
        y[:, 0].__iadd__(y[:, 1] * y[:, 2])
        error = distrain.AutogradError if lib is distrain else RuntimeError
        with pytest.raises(error, match="modified by an in-?place operation"):
            y.sum().backward()


def test_inplace_on_view_of_a_leaf_requiring_grad_is_refused():
    w = distrain.ones(3, 4, requires_grad=True)
    with pytest.raises(distrain.AutogradError, match="view of a leaf"):
        w[0].add_(1.0)
    np.testing.assert_array_equal(host(w), np.ones((3, 4)))  # refused before writing


@pytest.mark.parametrize("case", sorted(VIEW_INPLACE))
def test_inplace_on_view_under_no_grad_matches_torch(case, rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    weights = rng.standard_normal((3, 4)).astype(np.float32)
    (w,), (wt,) = leaves(a)
    with distrain.no_grad():
        VIEW_INPLACE[case](w)  # e.g. initialising part of a parameter
    with torch.no_grad():
        VIEW_INPLACE[case](wt)
    close(w, wt)
    assert w.is_leaf and w.requires_grad
    y, yt = w * 2, wt * 2
    with distrain.no_grad():
        VIEW_INPLACE[case](y)
    with torch.no_grad():
        VIEW_INPLACE[case](yt)
    close(y, yt)
    (y * distrain.tensor(weights)).sum().backward()
    (yt * torch.tensor(weights)).sum().backward()
    close(w.grad, wt.grad)


def test_inplace_on_non_leaf_from_constant_starts_recording(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (w,), (wt,) = leaves(a)
    y = distrain.zeros(3)
    y.add_(w * w)  # a tensor that did not require grad now does
    assert y.requires_grad and y.grad_fn is not None
    y.sum().backward()
    yt = torch.zeros(3)
    yt.add_(wt * wt)
    yt.sum().backward()
    close(w.grad, wt.grad)


def test_setitem_into_constant_buffer_is_differentiable(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (w,), (wt,) = leaves(a)
    out = distrain.zeros(2, 3)
    out[1] = w.exp()
    (out * out).sum().backward()
    outt = torch.zeros(2, 3)
    outt[1] = wt.exp()
    (outt * outt).sum().backward()
    close(w.grad, wt.grad)


# ----------------------------------------------------------------------------- graph shapes

GRAPHS = {
    "fan_out": lambda x, y: x * x + x.sin() * x + x.exp() - x,
    "same_tensor_twice_in_one_op": lambda x, y: x * x + (x + x) - x / (x * x + 1),
    "diamond": lambda x, y: (lambda a: a.sin() * a.cos() + a)(x * 2),
    "double_diamond": lambda x, y: (lambda a: (lambda b: b * b + b.tanh())(a.exp() + a * y))(x * y),
    "matmul_fan_out": lambda x, y: (x @ y.T) @ (y @ x.T) + (x @ x.T),
    "broadcast_reuse": lambda x, y: (x.sum(0, keepdim=True) * x + y.mean(1, keepdim=True) * y),
    "shared_subexpression": lambda x, y: (lambda s: s.sigmoid() * s.tanh() + s * 0.5)(x * y + x),
}


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_graph_shapes_match_torch(case, device, rng):
    a = rng.standard_normal((3, 3)).astype(np.float32)
    b = rng.standard_normal((3, 3)).astype(np.float32)
    wts = rng.standard_normal((3, 3)).astype(np.float32)
    (x, y), (xt, yt) = leaves(a, b, device=device)
    out = GRAPHS[case](x, y)
    outt = GRAPHS[case](xt, yt)
    close(out, outt)
    (out * distrain.tensor(wts, device=device)).sum().backward()
    (outt * torch.tensor(wts)).sum().backward()
    close(x.grad, xt.grad, rtol=1e-4, atol=1e-5)
    if yt.grad is None:
        assert y.grad is None
    else:
        close(y.grad, yt.grad, rtol=1e-4, atol=1e-5)


def test_leaf_not_in_graph_keeps_grad_none(rng):
    (x, y), _ = leaves(rng.standard_normal(2).astype(np.float32), rng.standard_normal(2).astype(np.float32))
    (x * 2).sum().backward()
    assert y.grad is None
    np.testing.assert_array_equal(host(x.grad), [2.0, 2.0])


def test_constant_inputs_get_no_grad(rng):
    a = rng.standard_normal(3).astype(np.float32)
    x = distrain.tensor(a, requires_grad=True)
    c = distrain.tensor(a)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(host(x.grad), a)


# ----------------------------------------------------------------------------- gradient memory ownership

OWNERSHIP = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "add_three": lambda a, b: a + b + a,
    "reshape_pass_through": lambda a, b: a.reshape(2, 3).reshape(6) + b.view(6),
    "add_then_mul_by_one": lambda a, b: (a + b) * 1.0,
    "broadcast_add": lambda a, b: a + b[0:1],
}


@pytest.mark.parametrize("case", sorted(OWNERSHIP))
@pytest.mark.parametrize("root", ["sum", "explicit_gradient"])
def test_leaves_never_share_gradient_memory(case, root, rng):
    a = rng.standard_normal(6).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    g = rng.standard_normal(6).astype(np.float32)
    (x, y), (xt, yt) = leaves(a, b)
    out, outt = OWNERSHIP[case](x, y), OWNERSHIP[case](xt, yt)
    grad = distrain.tensor(g)
    if root == "sum":
        out.sum().backward()
        outt.sum().backward()
    else:
        out.backward(grad)
        outt.backward(torch.tensor(g))
    gx, gy = x.grad.numpy(), y.grad.numpy()
    assert not np.shares_memory(gx, gy)
    assert not np.shares_memory(gx, grad.numpy())
    assert not np.shares_memory(gy, grad.numpy())
    close(x.grad, xt.grad)
    close(y.grad, yt.grad)
    # mutating one gradient (or the root gradient) must leave the other untouched.
    # (torch itself lets x.grad and y.grad alias here for some cases, so from now on the
    # reference is computed on fresh torch leaves.)
    expected_y = gy.copy()
    x.grad.data.mul_(0.0)
    grad.fill_(123.0)
    np.testing.assert_array_equal(y.grad.numpy(), expected_y)
    # and a second backward accumulates separately into each
    xt2, yt2 = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    sx, sy = torch.autograd.grad(OWNERSHIP[case](xt2, yt2).sum(), [xt2, yt2])
    OWNERSHIP[case](x, y).sum().backward()
    np.testing.assert_allclose(host(x.grad), sx.numpy(), rtol=1e-6)
    np.testing.assert_allclose(host(y.grad), expected_y + sy.numpy(), rtol=1e-6)


def test_leaf_as_root_gradient_is_copied():
    x = distrain.tensor([1.0, 2.0], requires_grad=True)
    g = distrain.tensor([3.0, 4.0])
    x.backward(g)
    assert not np.shares_memory(x.grad.numpy(), g.numpy())
    g.fill_(0.0)
    np.testing.assert_array_equal(host(x.grad), [3.0, 4.0])


def test_hook_replacement_gradient_is_not_aliased():
    x = distrain.tensor([1.0, 2.0], requires_grad=True)
    keep = distrain.tensor([5.0, 6.0])
    x.register_hook(lambda grad: keep)
    (x * 2).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [5.0, 6.0])
    keep.fill_(0.0)
    np.testing.assert_array_equal(host(x.grad), [5.0, 6.0])


# ----------------------------------------------------------------------------- grad mode

def _op_requires_grad():
    x = distrain.ones(2, requires_grad=True)
    return (x * 2).requires_grad


def test_no_grad_context():
    x = distrain.ones(2, requires_grad=True)
    assert distrain.is_grad_enabled() is True
    with distrain.no_grad():
        assert distrain.is_grad_enabled() is False
        y = x * 2
        z = x.exp().sum()
    assert distrain.is_grad_enabled() is True
    for t in (y, z):
        assert t.requires_grad is False
        assert t.grad_fn is None
        assert t.is_leaf
    np.testing.assert_array_equal(host(y), [2.0, 2.0])


def test_nested_grad_modes():
    x = distrain.ones(2, requires_grad=True)
    with distrain.no_grad():
        with distrain.enable_grad():
            assert distrain.is_grad_enabled()
            inner = x * 2
            with distrain.no_grad():
                assert not distrain.is_grad_enabled()
                innermost = x * 3
            assert distrain.is_grad_enabled()
        assert not distrain.is_grad_enabled()
        outer = x * 4
        with distrain.set_grad_enabled(True):
            reenabled = x * 5
        with distrain.set_grad_enabled(False):
            disabled = x * 6
        assert not distrain.is_grad_enabled()
    assert distrain.is_grad_enabled()
    assert inner.requires_grad and reenabled.requires_grad
    assert not innermost.requires_grad and not outer.requires_grad and not disabled.requires_grad
    inner.sum().backward()
    np.testing.assert_array_equal(host(x.grad), [2.0, 2.0])


def test_grad_mode_restored_after_exception():
    with pytest.raises(KeyError):
        with distrain.no_grad():
            raise KeyError("boom")
    assert distrain.is_grad_enabled()
    with distrain.no_grad():
        with pytest.raises(KeyError):
            with distrain.enable_grad():
                raise KeyError("boom")
        assert not distrain.is_grad_enabled()


def test_grad_mode_decorators():
    @distrain.no_grad()
    def off():
        return distrain.is_grad_enabled(), _op_requires_grad()

    @distrain.enable_grad()
    def on():
        return distrain.is_grad_enabled(), _op_requires_grad()

    @distrain.set_grad_enabled(False)
    def set_off():
        return distrain.is_grad_enabled(), _op_requires_grad()

    assert distrain.is_grad_enabled()  # defining set_off did not switch the mode
    assert off() == (False, False)
    assert on() == (True, True)
    assert set_off() == (False, False)
    with distrain.no_grad():
        assert on() == (True, True)
        assert not distrain.is_grad_enabled()
    assert distrain.is_grad_enabled()
    assert off.__name__ == "off"  # functools.wraps


def test_grad_mode_bare_decorator_like_torch():
    @torch.no_grad
    def torch_off():
        return torch.is_grad_enabled()

    @distrain.no_grad
    def off():
        return distrain.is_grad_enabled()

    assert torch_off() is False
    assert off() is False
    assert distrain.is_grad_enabled()


def test_set_grad_enabled_as_plain_call():
    try:
        distrain.set_grad_enabled(False)
        assert not distrain.is_grad_enabled()
        assert not _op_requires_grad()
        distrain.set_grad_enabled(True)
        assert distrain.is_grad_enabled()
        assert _op_requires_grad()
    finally:
        distrain.set_grad_enabled(True)


def test_no_grad_output_used_later_is_a_constant(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    with distrain.no_grad():
        c = x.exp()
    with torch.no_grad():
        ct = xt.exp()
    (c * x).sum().backward()
    (ct * xt).sum().backward()
    close(x.grad, xt.grad)


def test_grad_mode_is_per_thread():
    import threading

    seen = []
    with distrain.no_grad():
        t = threading.Thread(target=lambda: seen.append(distrain.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


# ----------------------------------------------------------------------------- autograd.grad

def test_autograd_grad_matches_torch_and_leaves_grad_alone(device, rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    (x, w), (xt, wt) = leaves(a, b, device=device)
    out = ((x * w).tanh() + x.exp() * w).sum()
    outt = ((xt * wt).tanh() + xt.exp() * wt).sum()
    gx, gw = autograd.grad(out, [x, w])
    gxt, gwt = torch.autograd.grad(outt, [xt, wt])
    close(gx, gxt)
    close(gw, gwt)
    assert x.grad is None and w.grad is None
    assert gx.requires_grad is False


def test_autograd_grad_single_tensor_input_returns_tuple(rng):
    (x,), _ = leaves(rng.standard_normal(2).astype(np.float32))
    res = autograd.grad((x * x).sum(), x)
    assert isinstance(res, tuple) and len(res) == 1
    np.testing.assert_allclose(host(res[0]), 2 * host(x))


def test_autograd_grad_with_grad_outputs(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    g = rng.standard_normal((2, 3)).astype(np.float32)
    (x,), (xt,) = leaves(a)
    (gx,) = autograd.grad(x.sin() * x, x, grad_outputs=distrain.tensor(g))
    (gxt,) = torch.autograd.grad(xt.sin() * xt, xt, grad_outputs=torch.tensor(g))
    close(gx, gxt)


def test_autograd_grad_multiple_outputs(rng):
    a = rng.standard_normal(3).astype(np.float32)
    g = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    (gx,) = autograd.grad([(x * x).sum(), x.exp()], [x], grad_outputs=[None, distrain.tensor(g)])
    (gxt,) = torch.autograd.grad([(xt * xt).sum(), xt.exp()], [xt], grad_outputs=[None, torch.tensor(g)])
    close(gx, gxt)


def test_autograd_grad_non_scalar_without_grad_outputs_raises():
    x = distrain.ones(3, requires_grad=True)
    with pytest.raises(distrain.AutogradError):
        autograd.grad(x * 2, x)


def test_autograd_grad_wrt_intermediate(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x,), (xt,) = leaves(a)
    h = x * 2
    ht = xt * 2
    (gh,) = autograd.grad((h.sin() * h).sum(), h)
    (ght,) = torch.autograd.grad((ht.sin() * ht).sum(), ht)
    close(gh, ght)
    assert x.grad is None


def test_allow_unused(rng):
    a = rng.standard_normal(3).astype(np.float32)
    (x, z), (xt, zt) = leaves(a, a)
    out = (x * x).sum()
    with pytest.raises(distrain.AutogradError):
        autograd.grad(out, [x, z], retain_graph=True)
    gx, gz = autograd.grad(out, [x, z], allow_unused=True)
    gxt, gzt = torch.autograd.grad((xt * xt).sum(), [xt, zt], allow_unused=True)
    assert gzt is None
    assert gz is None
    close(gx, gxt)


SECOND_ORDER = {
    "cube": lambda x: (x ** 3).sum(),
    "x_sin_x": lambda x: (x.sin() * x).sum(),
    "exp": lambda x: x.exp().sum(),
    "tanh": lambda x: x.tanh().sum(),
    "sigmoid": lambda x: x.sigmoid().sum(),
    "exp_times_x": lambda x: (x.exp() * x * x).sum(),
    "log_sqrt": lambda x: ((x * x + 1).log() + (x * x + 1).sqrt()).sum(),
    "softmax_weighted": lambda x: (x.softmax(0) * distrain_or_torch_arange(x)).sum(),
}


def distrain_or_torch_arange(x):
    n = x.shape[0]
    if isinstance(x, torch.Tensor):
        return torch.arange(n, dtype=x.dtype)
    return distrain.arange(n, dtype=x.dtype)


@pytest.mark.parametrize("case", sorted(SECOND_ORDER))
def test_second_derivative_with_create_graph(case, device, rng):
    a = rng.uniform(-1.5, 1.5, 5).astype(np.float64)
    (x,), (xt,) = leaves(a, device=device)
    f = SECOND_ORDER[case]
    (g,) = autograd.grad(f(x), x, create_graph=True)
    (gt,) = torch.autograd.grad(f(xt), xt, create_graph=True)
    assert g.requires_grad and g.grad_fn is not None
    close(g, gt, rtol=1e-10, atol=1e-12)
    (h,) = autograd.grad(g.sum(), x)
    (ht,) = torch.autograd.grad(gt.sum(), xt)
    close(h, ht, rtol=1e-10, atol=1e-12)


def test_second_derivative_closed_forms():
    a = np.array([-1.3, 0.2, 0.9, 2.0])
    x = distrain.tensor(a, requires_grad=True)
    (g,) = autograd.grad((x ** 3).sum(), x, create_graph=True)
    (h,) = autograd.grad(g.sum(), x, create_graph=True)
    (third,) = autograd.grad(h.sum(), x)
    np.testing.assert_allclose(host(g), 3 * a**2, rtol=1e-12)
    np.testing.assert_allclose(host(h), 6 * a, rtol=1e-12)
    np.testing.assert_allclose(host(third), np.full(4, 6.0), rtol=1e-12)
    (g2,) = autograd.grad((x.sin() * x).sum(), x, create_graph=True)
    (h2,) = autograd.grad(g2.sum(), x)
    np.testing.assert_allclose(host(g2), np.sin(a) + a * np.cos(a), rtol=1e-12)
    np.testing.assert_allclose(host(h2), 2 * np.cos(a) - a * np.sin(a), rtol=1e-12)


def test_mixed_partials_match_torch(rng):
    a = rng.standard_normal(3)
    b = rng.standard_normal(3)
    (x, y), (xt, yt) = leaves(a, b)
    (gx,) = autograd.grad(((x * y).sin() * x).sum(), x, create_graph=True)
    (gxy,) = autograd.grad(gx.sum(), y)
    (gxt,) = torch.autograd.grad(((xt * yt).sin() * xt).sum(), xt, create_graph=True)
    (gxyt,) = torch.autograd.grad(gxt.sum(), yt)
    close(gxy, gxyt, rtol=1e-10, atol=1e-12)


def test_backward_create_graph_then_differentiate_grad():
    a = np.array([0.5, -1.0, 2.0])
    x = distrain.tensor(a, requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.grad_fn is not None
    np.testing.assert_allclose(host(x.grad), 3 * a**2)
    (h,) = autograd.grad(x.grad.sum(), x)
    np.testing.assert_allclose(host(h), 6 * a)


def test_gradient_penalty_style_double_backward(rng):
    a = rng.standard_normal((4, 3))
    b = rng.standard_normal((3, 2))
    (x, w), (xt, wt) = leaves(a, b)
    (gx,) = autograd.grad((x @ w).tanh().sum(), x, create_graph=True)
    penalty = (gx * gx).sum()
    penalty.backward()
    (gxt,) = torch.autograd.grad((xt @ wt).tanh().sum(), xt, create_graph=True)
    (gxt * gxt).sum().backward()
    close(w.grad, wt.grad, rtol=1e-10, atol=1e-12)
    close(x.grad, xt.grad, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- gradcheck

class Cube(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


class WrongCube(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2 * x * x  # wrong on purpose


def test_gradcheck_accepts_correct_function(rng):
    x = distrain.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert autograd.gradcheck(Cube.apply, (x,)) is True


def test_gradcheck_accepts_builtin_ops(rng):
    x = distrain.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w = distrain.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    assert autograd.gradcheck(lambda a, b: (a @ b).tanh() * a.sum(), (x, w)) is True


def test_gradcheck_multiple_outputs_and_constant_inputs(rng):
    x = distrain.tensor(rng.standard_normal(4), requires_grad=True)
    c = distrain.tensor(rng.standard_normal(4))
    assert autograd.gradcheck(lambda a: (a.sin(), a.exp() * a), (x,)) is True
    assert autograd.gradcheck(lambda a, b: (a * b).tanh(), (x, c)) is True


def test_gradcheck_rejects_wrong_backward(rng):
    x = distrain.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(Exception) as info:
        autograd.gradcheck(WrongCube.apply, (x,))
    assert not isinstance(info.value, (TypeError, AttributeError, NameError))  # a real mismatch, not a crash
    assert autograd.gradcheck(WrongCube.apply, (x,), raise_exception=False) is False


# ----------------------------------------------------------------------------- Variable shim

def test_variable_shim_returns_tensor():
    v = autograd.Variable(distrain.tensor([1.0, 2.0]), requires_grad=True)
    assert isinstance(v, distrain.Tensor)
    assert v.requires_grad and v.is_leaf
    (v * v).sum().backward()
    np.testing.assert_array_equal(host(v.grad), [2.0, 4.0])
    plain = autograd.Variable(distrain.tensor([1.0, 2.0]))
    assert isinstance(plain, distrain.Tensor) and not plain.requires_grad
    np.testing.assert_array_equal(host(plain), [1.0, 2.0])


def test_variable_leaves_its_argument_alone_like_torch():
    t = distrain.tensor([1.0, 2.0])
    tt = torch.tensor([1.0, 2.0])
    autograd.Variable(t, requires_grad=True)
    torch.autograd.Variable(tt, requires_grad=True)
    assert tt.requires_grad is False
    assert t.requires_grad is tt.requires_grad
