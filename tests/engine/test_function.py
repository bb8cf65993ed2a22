"""Custom `autograd.Function`s, written once against a framework module and run on both
distrain and torch, so every value and gradient is compared with PyTorch 2.13.
"""
import numpy as np
import pytest
import torch

import distrain


def host(t):
    return t.detach().cpu().numpy()


def close(ours, theirs, rtol=1e-5, atol=1e-6):
    assert ours is not None, "distrain gave no gradient where torch has one"
    np.testing.assert_allclose(host(ours), theirs.detach().numpy(), rtol=rtol, atol=atol)


def make_functions(lib):
    """The same Function subclasses for `lib` = distrain or torch."""
    Function = lib.autograd.Function

    class MyReLU(Function):
        """The lecture's ReLU: save the input, zero the gradient where it was negative."""

        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return input.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            (input,) = ctx.saved_tensors
            grad_input = grad_output.clone()
            grad_input[input < 0] = 0
            return grad_input

    class TwoOutputs(Function):
        """(2x + y, x * y): two outputs, two inputs."""

        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return x * 2 + y, x * y

        @staticmethod
        def backward(ctx, g_sum, g_prod):
            x, y = ctx.saved_tensors
            return g_sum * 2 + g_prod * y, g_sum + g_prod * x

    class ScaleShift(Function):
        """x * scale + shift with python-number arguments and an option flag."""

        @staticmethod
        def forward(ctx, x, scale, shift, square=False):
            ctx.scale = scale
            ctx.square = square
            if square:
                ctx.save_for_backward(x)
                return x * x * scale + shift
            return x * scale + shift

        @staticmethod
        def backward(ctx, grad):
            if ctx.square:
                (x,) = ctx.saved_tensors
                return grad * 2 * x * ctx.scale, None, None, None
            return grad * ctx.scale, None, None, None

    class RecordNeeds(Function):
        """x * y + k, recording ctx.needs_input_grad and returning None where not needed."""

        seen = []

        @staticmethod
        def forward(ctx, x, y, k):
            ctx.save_for_backward(x, y)
            return x * y + k

        @staticmethod
        def backward(ctx, grad):
            x, y = ctx.saved_tensors
            RecordNeeds.seen.append(tuple(ctx.needs_input_grad))
            gx = grad * y if ctx.needs_input_grad[0] else None
            gy = grad * x if ctx.needs_input_grad[1] else None
            return gx, gy, None

    class ValueAndMask(Function):
        """(x * 3, (x > 0) as float) with the mask marked non-differentiable."""

        grads_seen = []

        @staticmethod
        def forward(ctx, x):
            mask = (x > 0).to(x.dtype)
            ctx.mark_non_differentiable(mask)
            return x * 3, mask

        @staticmethod
        def backward(ctx, g, g_mask):
            ValueAndMask.grads_seen.append(g_mask)
            return g * 3

    class ArgMax(Function):
        """Row maxima and their indices; the integer indices are non-differentiable."""

        @staticmethod
        def forward(ctx, x):
            values, idx = x.max(1)
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(x)
            return values, idx

        @staticmethod
        def backward(ctx, g, g_idx):
            (x,) = ctx.saved_tensors
            is_max = (x == x.max(1).values.unsqueeze(1)).to(x.dtype)  # no ties with random floats
            return is_max * g.unsqueeze(1)

    class SeeGradMode(Function):
        seen = []

        @staticmethod
        def forward(ctx, x):
            SeeGradMode.seen.append(lib.is_grad_enabled())
            inner = x * 2
            SeeGradMode.seen.append(inner.requires_grad)
            return inner

        @staticmethod
        def backward(ctx, g):
            return g * 2

    class SquareViaSaved(Function):
        """Saves its own output; backward uses it (d/dx exp(x) = exp(x))."""

        @staticmethod
        def forward(ctx, x):
            out = x.exp()
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, g):
            (out,) = ctx.saved_tensors
            return g * out

    class Cube(Function):
        """x**3 with a backward built from differentiable ops, so it can be differentiated again."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x

    class PassThrough(Function):
        """Returns its input object itself; backward doubles the gradient."""

        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    return dict(Cube=Cube, PassThrough=PassThrough, MyReLU=MyReLU, TwoOutputs=TwoOutputs, ScaleShift=ScaleShift, RecordNeeds=RecordNeeds,
                ValueAndMask=ValueAndMask, ArgMax=ArgMax, SeeGradMode=SeeGradMode, SquareViaSaved=SquareViaSaved)


D = make_functions(distrain)
T = make_functions(torch)


def pair(a, device="cpu", requires_grad=True):
    return (distrain.tensor(a, device=device, requires_grad=requires_grad),
            torch.tensor(a, requires_grad=requires_grad))


# ----------------------------------------------------------------------------- the lecture ReLU

def test_my_relu_matches_torch(device, rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    x, xt = pair(a, device)
    y = D["MyReLU"].apply(x)
    yt = T["MyReLU"].apply(xt)
    close(y, yt)
    np.testing.assert_array_equal(host(y), np.maximum(a, 0))
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    (y @ distrain.tensor(w, device=device)).sum().backward()
    (yt @ torch.tensor(w)).sum().backward()
    close(x.grad, xt.grad)


def test_my_relu_in_a_two_layer_net_matches_torch(rng):
    xs = rng.standard_normal((8, 4)).astype(np.float32)
    ys = rng.standard_normal((8, 2)).astype(np.float32)
    w1 = rng.standard_normal((4, 6)).astype(np.float32)
    w2 = rng.standard_normal((6, 2)).astype(np.float32)
    (d1, t1), (d2, t2) = pair(w1), pair(w2)
    loss = ((D["MyReLU"].apply(distrain.tensor(xs) @ d1) @ d2 - distrain.tensor(ys)) ** 2).sum()
    losst = ((T["MyReLU"].apply(torch.tensor(xs) @ t1) @ t2 - torch.tensor(ys)) ** 2).sum()
    close(loss, losst, rtol=1e-5)
    loss.backward()
    losst.backward()
    close(d1.grad, t1.grad, rtol=1e-4, atol=1e-5)
    close(d2.grad, t2.grad, rtol=1e-4, atol=1e-5)


def test_function_output_without_grad_inputs_does_not_require_grad(rng):
    a = rng.standard_normal(3).astype(np.float32)
    y = D["MyReLU"].apply(distrain.tensor(a))
    assert not y.requires_grad and y.grad_fn is None
    np.testing.assert_array_equal(host(y), np.maximum(a, 0))


def test_function_under_no_grad_records_nothing(rng):
    x, _ = pair(rng.standard_normal(3).astype(np.float32))
    with distrain.no_grad():
        y = D["MyReLU"].apply(x)
    assert not y.requires_grad and y.grad_fn is None


def test_forward_runs_without_recording(rng):
    x, xt = pair(rng.standard_normal(3).astype(np.float32))
    D["SeeGradMode"].seen.clear()
    T["SeeGradMode"].seen.clear()
    y = D["SeeGradMode"].apply(x)
    yt = T["SeeGradMode"].apply(xt)
    assert T["SeeGradMode"].seen == [False, False]
    assert D["SeeGradMode"].seen == T["SeeGradMode"].seen
    y.sum().backward()
    yt.sum().backward()
    close(x.grad, xt.grad)


# ----------------------------------------------------------------------------- two outputs

@pytest.mark.parametrize("use", ["both", "first", "second", "second_twice"])
def test_two_output_function(use, device, rng):
    a = rng.standard_normal(4).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    (x, xt), (y, yt) = pair(a, device), pair(b, device)
    s, p = D["TwoOutputs"].apply(x, y)
    st, pt = T["TwoOutputs"].apply(xt, yt)
    close(s, st)
    close(p, pt)
    assert s.grad_fn is not None and p.grad_fn is not None

    def loss(s, p):
        if use == "both":
            return (s * s).sum() + (p * 3).sum()
        if use == "first":
            return (s * s).sum()
        if use == "second":
            return p.sum()
        return (p * p).sum() + p.sum()

    loss(s, p).backward()
    loss(st, pt).backward()
    close(x.grad, xt.grad)
    close(y.grad, yt.grad)


# ----------------------------------------------------------------------------- non-tensor arguments

@pytest.mark.parametrize("square", [False, True])
def test_non_tensor_arguments(square, device, rng):
    a = rng.standard_normal(5).astype(np.float32)
    x, xt = pair(a, device)
    y = D["ScaleShift"].apply(x, 2.5, -1.0, square)
    yt = T["ScaleShift"].apply(xt, 2.5, -1.0, square)
    close(y, yt)
    (y * y).sum().backward()
    (yt * yt).sum().backward()
    close(x.grad, xt.grad)


# ----------------------------------------------------------------------------- needs_input_grad

@pytest.mark.parametrize("x_grad,y_grad", [(True, True), (True, False), (False, True)])
def test_needs_input_grad(x_grad, y_grad, rng):
    a = rng.standard_normal(3).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    x, xt = pair(a, requires_grad=x_grad)
    y, yt = pair(b, requires_grad=y_grad)
    D["RecordNeeds"].seen.clear()
    T["RecordNeeds"].seen.clear()
    out = D["RecordNeeds"].apply(x, y, 4.0)
    outt = T["RecordNeeds"].apply(xt, yt, 4.0)
    close(out, outt)
    out.sum().backward()
    outt.sum().backward()
    assert T["RecordNeeds"].seen == [(x_grad, y_grad, False)]
    assert D["RecordNeeds"].seen == T["RecordNeeds"].seen
    for ours, theirs in ((x, xt), (y, yt)):
        if theirs.grad is None:
            assert ours.grad is None
        else:
            close(ours.grad, theirs.grad)


def test_needs_input_grad_with_intermediate_input(rng):
    a = rng.standard_normal(3).astype(np.float32)
    x, xt = pair(a)
    D["RecordNeeds"].seen.clear()
    out = D["RecordNeeds"].apply(x.exp(), distrain.tensor(a), 1.0)
    outt = T["RecordNeeds"].apply(xt.exp(), torch.tensor(a), 1.0)
    out.sum().backward()
    outt.sum().backward()
    assert D["RecordNeeds"].seen == [(True, False, False)]
    close(x.grad, xt.grad)


# ----------------------------------------------------------------------------- mark_non_differentiable

def test_mark_non_differentiable_float_output(rng):
    a = rng.standard_normal(6).astype(np.float32)
    x, xt = pair(a)
    D["ValueAndMask"].grads_seen.clear()
    T["ValueAndMask"].grads_seen.clear()
    v, m = D["ValueAndMask"].apply(x)
    vt, mt = T["ValueAndMask"].apply(xt)
    assert mt.requires_grad is False
    assert m.requires_grad is False
    assert v.requires_grad is True
    close(v, vt)
    close(m, mt)
    (v * m).sum().backward()
    (vt * mt).sum().backward()
    close(x.grad, xt.grad)
    # torch hands backward a zero gradient for the non-differentiable output
    (g_mask_t,) = T["ValueAndMask"].grads_seen
    (g_mask,) = D["ValueAndMask"].grads_seen
    assert g_mask is not None
    close(g_mask, g_mask_t)


def test_mark_non_differentiable_indices(device, rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    x, xt = pair(a, device)
    v, idx = D["ArgMax"].apply(x)
    vt, idxt = T["ArgMax"].apply(xt)
    assert not idx.requires_grad
    assert idx.dtype == distrain.int64
    np.testing.assert_array_equal(host(idx), idxt.numpy())
    close(v, vt)
    (v * v).sum().backward()
    (vt * vt).sum().backward()
    close(x.grad, xt.grad)


# ----------------------------------------------------------------------------- saved tensors

def test_saved_output_is_usable_in_backward(device, rng):
    a = rng.standard_normal(4).astype(np.float32)
    x, xt = pair(a, device)
    y = D["SquareViaSaved"].apply(x)
    yt = T["SquareViaSaved"].apply(xt)
    (y * 2).sum().backward()
    (yt * 2).sum().backward()
    close(x.grad, xt.grad)


def test_function_saved_tensor_modified_in_place_raises(rng):
    a = rng.standard_normal(4).astype(np.float32)
    x, xt = pair(a)
    h = x * 1.0
    y = D["MyReLU"].apply(h)
    h.add_(1.0)
    with pytest.raises(distrain.AutogradError):
        y.sum().backward()
    ht = xt * 1.0
    yt = T["MyReLU"].apply(ht)
    ht.add_(1.0)
    with pytest.raises(RuntimeError):
        yt.sum().backward()


def test_function_graph_freed_after_backward(rng):
    x, _ = pair(rng.standard_normal(3).astype(np.float32))
    y = D["MyReLU"].apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(host(x.grad), 2 * (host(x) > 0))
    with pytest.raises(distrain.AutogradError):
        y.backward()


def test_function_apply_with_fan_out_and_accumulation(rng):
    a = rng.standard_normal(5).astype(np.float32)
    x, xt = pair(a)
    for lib_x, F in ((x, D), (xt, T)):
        r1 = F["MyReLU"].apply(lib_x)
        r2 = F["MyReLU"].apply(lib_x * -1)
        (r1 * 2 + r2 * r1 + r2).sum().backward()
    close(x.grad, xt.grad)


# ----------------------------------------------------------------------------- more Function cases

def test_function_double_backward(rng):
    a = rng.standard_normal(4)
    x, xt = pair(a)
    (g,) = distrain.autograd.grad(D["Cube"].apply(x).sum(), x, create_graph=True)
    (gt,) = torch.autograd.grad(T["Cube"].apply(xt).sum(), xt, create_graph=True)
    close(g, gt, rtol=1e-12)
    (h,) = distrain.autograd.grad(g.sum(), x)
    (ht,) = torch.autograd.grad(gt.sum(), xt)
    close(h, ht, rtol=1e-12)
    np.testing.assert_allclose(host(h), 6 * a, rtol=1e-12)


def test_function_returning_its_input(rng):
    a = rng.standard_normal(3).astype(np.float32)
    x, xt = pair(a)
    y = D["PassThrough"].apply(x)
    yt = T["PassThrough"].apply(xt)
    assert y.grad_fn is not None and not y.is_leaf
    assert x.is_leaf and x.grad_fn is None  # the input stays a leaf
    close(y, yt)
    (y * y).sum().backward()
    (yt * yt).sum().backward()
    close(x.grad, xt.grad)


def test_a_function_returning_none_for_a_used_input_does_not_drop_its_other_gradients():
    """The None edge is done with nothing on it; the linear path's gradient still arrives (torch's rule)."""

    def run(lib):
        class NoGradient(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, grad):
                return None

        weight = lib.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
        x = lib.tensor([[1.0, 2.0], [3.0, -1.0]])
        hidden = x.mm(weight)
        (hidden.sum() + NoGradient.apply(hidden).sum() + NoGradient.apply(weight).sum()).backward()
        return weight.grad.numpy()

    import torch

    np.testing.assert_array_equal(run(distrain), run(torch))
