"""The Tensor object: attributes, conversions, `.data`, repr, in-place ops, comparisons, errors.

Values are checked against NumPy or PyTorch 2.13.
"""
import operator
import re

import numpy as np
import pytest
import torch

import distrain

from ..conftest import CUDA_AVAILABLE


def host(t):
    return t.detach().cpu().numpy()


def make(values, device="cpu", dtype=None, requires_grad=False):
    a = np.asarray(values)
    if dtype is None and a.dtype.kind == "f":
        a = a.astype(np.float32)
    return distrain.tensor(a, dtype=dtype, device=device, requires_grad=requires_grad)


# ----------------------------------------------------------------------------- attributes

def test_shape_ndim_size_numel_dim(device, rng):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    t = make(a, device)
    assert t.shape == (2, 3, 4)
    assert isinstance(t.shape, distrain.Size) and isinstance(t.shape, tuple)
    assert t.ndim == 3
    assert t.dim() == 3
    assert t.size() == (2, 3, 4)
    assert isinstance(t.size(), distrain.Size)
    assert [t.size(d) for d in range(3)] == [2, 3, 4]
    assert t.size(-1) == 4 and t.size(-3) == 2
    assert t.numel() == 24
    assert t.dtype == distrain.float32
    assert str(t.device) == device
    assert t.device == distrain.device(device)


@pytest.mark.parametrize(
    "value,dtype,pytype",
    [(2.5, None, float), (-3, None, int), (True, None, bool), ([[4.25]], None, float), (7, "float64", float)],
)
def test_item(value, dtype, pytype, device):
    t = distrain.tensor(value, dtype=None if dtype is None else getattr(distrain, dtype), device=device)
    ref = torch.tensor(value, dtype=None if dtype is None else getattr(torch, dtype))
    got = t.item()
    assert type(got) is pytype
    assert got == ref.item()


def test_item_of_many_elements_raises():
    with pytest.raises((distrain.DistrainError, ValueError, RuntimeError)):
        distrain.zeros(2).item()


@pytest.mark.parametrize(
    "value", [[1.5, -2.0], [[1, 2], [3, 4]], [[True, False]], 3.25, 7, [[[1.0], [2.0]]]]
)
def test_tolist_matches_torch(value, device):
    t = distrain.tensor(value, device=device)
    ref = torch.tensor(value).tolist()
    got = t.tolist()
    assert got == ref
    assert type(got) is type(ref)


def test_numpy_values_and_dtype(rng):
    a = rng.standard_normal((3, 2))
    t = distrain.tensor(a)
    n = t.numpy()
    assert isinstance(n, np.ndarray)
    assert n.dtype == np.float64
    np.testing.assert_array_equal(n, a)


def test_numpy_shares_memory_with_tensor():
    t = distrain.zeros(3)
    n = t.numpy()
    t.add_(2.0)
    np.testing.assert_array_equal(n, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("target", ["float32", "float64", "float16", "int32", "int64", "bool"])
@pytest.mark.parametrize("source", ["float32", "int64"])
def test_to_dtype_values(source, target, device):
    a = np.array([[-1.7, 0.0, 2.2], [3.9, -0.2, 5.0]]).astype(source)
    t = distrain.tensor(a, device=device)
    out = t.to(getattr(distrain, target))
    assert out.dtype == np.dtype(target)
    assert str(out.device) == device
    ref = torch.tensor(a).to(getattr(torch, target)).numpy()
    np.testing.assert_array_equal(host(out), ref)
    # the source is untouched
    np.testing.assert_array_equal(host(t), a)


@pytest.mark.parametrize(
    "method,target", [("float", "float32"), ("double", "float64"), ("half", "float16"),
                      ("long", "int64"), ("int", "int32"), ("bool", "bool")]
)
def test_dtype_shortcut_methods(method, target, device):
    a = np.array([-1.7, 0.0, 2.5, 3.0], dtype=np.float64)
    out = getattr(distrain.tensor(a, device=device), method)()
    ref = getattr(torch.tensor(a), method)()
    assert out.dtype == np.dtype(target)
    np.testing.assert_array_equal(host(out), ref.numpy())


def test_to_device_and_dtype_forms(device):
    t = distrain.tensor([1.0, 2.0])
    for out in (t.to(device), t.to(distrain.device(device)), t.to(device=device)):
        assert str(out.device) == device
        assert out.dtype == distrain.float32
        np.testing.assert_array_equal(host(out), [1.0, 2.0])
    for out in (t.to(device, distrain.float64), t.to(device=device, dtype=distrain.float64)):
        assert str(out.device) == device
        assert out.dtype == distrain.float64
        np.testing.assert_array_equal(host(out), [1.0, 2.0])
    back = t.to(device).cpu()
    assert str(back.device) == "cpu"
    np.testing.assert_array_equal(back.numpy(), [1.0, 2.0])


def test_to_dtype_is_differentiable():
    a = np.array([0.5, -1.25, 2.0], dtype=np.float32)
    x = distrain.tensor(a, requires_grad=True)
    y = x.to(distrain.float64)
    assert y.requires_grad and y.grad_fn is not None
    (y * y).sum().backward()
    xt = torch.tensor(a, requires_grad=True)
    (xt.to(torch.float64) ** 2).sum().backward()
    assert x.grad.dtype == distrain.float32
    np.testing.assert_allclose(host(x.grad), xt.grad.numpy(), rtol=1e-6)


def test_to_device_is_differentiable(device):
    x = distrain.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.to(device)
    (y * y).sum().backward()
    assert str(x.grad.device) == "cpu"
    np.testing.assert_allclose(host(x.grad), [2.0, 4.0, 6.0])


def test_cpu_keeps_values(device, rng):
    a = rng.standard_normal((2, 2)).astype(np.float32)
    t = make(a, device)
    c = t.cpu()
    assert str(c.device) == "cpu"
    np.testing.assert_array_equal(c.numpy(), a)


def test_requires_grad_toggle():
    t = distrain.zeros(2)
    assert t.requires_grad is False
    assert t.requires_grad_() is t
    assert t.requires_grad is True and t.is_leaf
    t.requires_grad_(False)
    assert t.requires_grad is False


def test_is_leaf_and_grad_fn():
    x = distrain.ones(2, requires_grad=True)
    c = distrain.ones(2)
    y = x * 2
    z = c * 2
    assert x.is_leaf and x.grad_fn is None
    assert not y.is_leaf and y.grad_fn is not None and y.requires_grad
    assert z.is_leaf and z.grad_fn is None and not z.requires_grad


# ----------------------------------------------------------------------------- detach / clone / contiguous / T

def test_detach_shares_storage_not_graph(rng):
    a = rng.standard_normal(4).astype(np.float32)
    x = distrain.tensor(a, requires_grad=True)
    y = x * 3
    d = x.detach()
    dy = y.detach()
    for t in (d, dy):
        assert t.requires_grad is False
        assert t.grad_fn is None
        assert t.is_leaf
    assert np.shares_memory(d.numpy(), x.detach().numpy())
    d.add_(1.0)  # visible in x: same storage
    np.testing.assert_allclose(host(x), a + 1.0, rtol=1e-6)
    # the detached value does not carry gradient back
    (dy * x).sum().backward()
    np.testing.assert_allclose(host(x.grad), 3 * a, rtol=1e-6)


def test_clone_is_differentiable_and_independent(rng):
    a = rng.standard_normal(5).astype(np.float32)
    x = distrain.tensor(a, requires_grad=True)
    c = x.clone()
    assert not c.is_leaf and c.grad_fn is not None
    assert not np.shares_memory(host(c), host(x))
    (c * c * 2).sum().backward()
    np.testing.assert_allclose(host(x.grad), 4 * a, rtol=1e-6)
    # no_grad clone is a copy too
    plain = distrain.tensor(a)
    pc = plain.clone()
    pc.fill_(0.0)
    np.testing.assert_array_equal(host(plain), a)


def test_contiguous_values_layout_and_grad(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    x = distrain.tensor(a, requires_grad=True)
    y = x.T.contiguous()
    assert y.shape == (4, 3)
    np.testing.assert_array_equal(host(y), a.T)
    assert host(y).flags["C_CONTIGUOUS"]
    (y * distrain.tensor(w)).sum().backward()
    xt = torch.tensor(a, requires_grad=True)
    (xt.T.contiguous() * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(host(x.grad), xt.grad.numpy(), rtol=1e-6)


def test_transpose_shortcuts(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    t = distrain.tensor(a)
    np.testing.assert_array_equal(host(t.T), a.T)
    np.testing.assert_array_equal(host(t.t()), a.T)


# ----------------------------------------------------------------------------- .data

def test_data_is_detached_alias(rng):
    a = rng.standard_normal(3).astype(np.float32)
    w = distrain.tensor(a, requires_grad=True)
    d = w.data
    assert d.requires_grad is False and d.grad_fn is None
    assert np.shares_memory(d.numpy(), host(w))


def test_lecture_sgd_idiom_updates_in_place(rng):
    a = rng.standard_normal(4).astype(np.float32)
    x_np = rng.standard_normal(4).astype(np.float32)
    lr = 0.1
    w = distrain.tensor(a, requires_grad=True)
    wt = torch.tensor(a, requires_grad=True)
    alias = w.data.numpy()
    for _ in range(3):
        loss = ((w * distrain.tensor(x_np)).sum() - 1.0) ** 2
        loss.backward()
        w.data -= lr * w.grad.data
        w.grad.data.zero_()
        np.testing.assert_array_equal(host(w.grad), np.zeros(4, dtype=np.float32))

        lt = ((wt * torch.tensor(x_np)).sum() - 1.0) ** 2
        lt.backward()
        wt.data -= lr * wt.grad.data
        wt.grad.data.zero_()
    np.testing.assert_allclose(host(w), wt.detach().numpy(), rtol=1e-5, atol=1e-6)
    # w stayed the same leaf parameter, updated in place
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    np.testing.assert_allclose(alias, wt.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_grad_zero_via_data_keeps_grad_object():
    w = distrain.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    g = w.grad
    w.grad.data.zero_()
    assert w.grad is g
    np.testing.assert_array_equal(host(w.grad), [0.0, 0.0])
    (w * 3).sum().backward()
    np.testing.assert_array_equal(host(w.grad), [3.0, 3.0])


def test_data_setter_replaces_values():
    w = distrain.tensor([1.0, 2.0, 3.0], requires_grad=True)
    wt = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w.data = distrain.tensor([4.0, 5.0, 6.0])
    wt.data = torch.tensor([4.0, 5.0, 6.0])
    assert w.requires_grad and w.is_leaf
    np.testing.assert_array_equal(host(w), wt.detach().numpy())
    (w * w).sum().backward()
    (wt * wt).sum().backward()
    np.testing.assert_array_equal(host(w.grad), wt.grad.numpy())


# ----------------------------------------------------------------------------- repr

def test_repr_shows_values():
    r = repr(distrain.tensor([1.5, -2.25, 3.0]))
    for s in ("1.5", "2.25", "3."):
        assert s in r
    assert "grad_fn" not in r
    assert "tensor" in r.lower()


def test_repr_shows_grad_fn_name():
    x = distrain.tensor([1.5, 2.5], requires_grad=True)
    r = repr(x * 2.0)
    assert "3." in r and "5." in r
    assert "grad_fn" in r
    assert "mul" in r.lower()
    r2 = repr(x.exp())
    assert "grad_fn" in r2 and "exp" in r2.lower()


def test_repr_shows_device_when_not_cpu(device):
    r = repr(distrain.tensor([1.0], device=device))
    if device == "cpu":
        assert "cuda" not in r
    else:
        assert device in r


# ----------------------------------------------------------------------------- in-place ops

A = np.array([[1.5, -2.0, 3.0], [0.5, 4.0, -6.0]], dtype=np.float32)
B = np.array([[2.0, 0.5, -1.0], [4.0, -2.0, 3.0]], dtype=np.float32)
ROW = np.array([1.0, -3.0, 0.25], dtype=np.float32)

INPLACE_CASES = {
    "add_tensor": (lambda t, d: t.add_(distrain.tensor(B, device=d)), lambda a: a + B),
    "add_scalar": (lambda t, d: t.add_(2.5), lambda a: a + 2.5),
    "add_broadcast": (lambda t, d: t.add_(distrain.tensor(ROW, device=d)), lambda a: a + ROW),
    "sub_tensor": (lambda t, d: t.sub_(distrain.tensor(B, device=d)), lambda a: a - B),
    "sub_scalar": (lambda t, d: t.sub_(1.0), lambda a: a - 1.0),
    "mul_tensor": (lambda t, d: t.mul_(distrain.tensor(B, device=d)), lambda a: a * B),
    "mul_scalar": (lambda t, d: t.mul_(-3.0), lambda a: a * -3.0),
    "div_tensor": (lambda t, d: t.div_(distrain.tensor(B, device=d)), lambda a: a / B),
    "div_scalar": (lambda t, d: t.div_(4.0), lambda a: a / 4.0),
    "zero_": (lambda t, d: t.zero_(), lambda a: np.zeros_like(a)),
    "fill_": (lambda t, d: t.fill_(7.5), lambda a: np.full_like(a, 7.5)),
    "copy_": (lambda t, d: t.copy_(distrain.tensor(B, device=d)), lambda a: B.copy()),
    "copy_broadcast": (lambda t, d: t.copy_(distrain.tensor(ROW, device=d)), lambda a: np.broadcast_to(ROW, a.shape)),
    "copy_other_dtype": (lambda t, d: t.copy_(distrain.tensor([[1, 2, 3], [4, 5, 6]], device=d)),
                         lambda a: np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)),
    "clamp_both": (lambda t, d: t.clamp_(-1.0, 2.0), lambda a: np.clip(a, -1.0, 2.0)),
    "clamp_min": (lambda t, d: t.clamp_(min=0.0), lambda a: np.maximum(a, 0.0)),
    "clamp_max": (lambda t, d: t.clamp_(max=1.0), lambda a: np.minimum(a, 1.0)),
}


@pytest.mark.parametrize("case", sorted(INPLACE_CASES))
def test_inplace_methods_match_numpy_and_return_self(case, device):
    op, expected = INPLACE_CASES[case]
    t = distrain.tensor(A.copy(), device=device)
    alias = t  # in-place ops return the tensor itself
    out = op(t, device)
    assert out is alias
    assert t.dtype == distrain.float32
    assert t.shape == A.shape
    np.testing.assert_allclose(host(t), expected(A.copy()), rtol=1e-6)


@pytest.mark.parametrize(
    "op,np_op",
    [(operator.iadd, operator.add), (operator.isub, operator.sub), (operator.imul, operator.mul),
     (operator.itruediv, operator.truediv)],
)
@pytest.mark.parametrize("other_kind", ["tensor", "scalar"])
def test_augmented_assignment_is_in_place(op, np_op, other_kind, device):
    t = distrain.tensor(A.copy(), device=device)
    before = t
    storage = t.cpu().numpy() if device == "cpu" else None
    other = distrain.tensor(B, device=device) if other_kind == "tensor" else 2.0
    t = op(t, other)
    assert t is before
    expected = np_op(A, B if other_kind == "tensor" else 2.0)
    np.testing.assert_allclose(host(t), expected, rtol=1e-6)
    if storage is not None:
        np.testing.assert_allclose(storage, expected, rtol=1e-6)


SETITEM_CASES = {
    "int_scalar": (lambda t, d: t.__setitem__(0, 9.0), lambda a: a.__setitem__(0, 9.0)),
    "element": (lambda t, d: t.__setitem__((1, 2), -1.0), lambda a: a.__setitem__((1, 2), -1.0)),
    "column_tensor": (lambda t, d: t.__setitem__((slice(None), 1), distrain.tensor([7.0, 8.0], device=d)),
                      lambda a: a.__setitem__((slice(None), 1), [7.0, 8.0])),
    "bool_mask": (lambda t, d: t.__setitem__(distrain.tensor(A < 0, device=d), 0.0),
                  lambda a: a.__setitem__(A < 0, 0.0)),
    "slice_broadcast": (lambda t, d: t.__setitem__(slice(0, 2), distrain.tensor(ROW, device=d)),
                        lambda a: a.__setitem__(slice(0, 2), ROW)),
}


@pytest.mark.parametrize("case", sorted(SETITEM_CASES))
def test_setitem_matches_numpy(case, device):
    op, np_op = SETITEM_CASES[case]
    t = distrain.tensor(A.copy(), device=device)
    op(t, device)
    expected = A.copy()
    np_op(expected)
    np.testing.assert_array_equal(host(t), expected)


def test_inplace_on_view_is_visible_in_base():
    base = distrain.zeros(2, 3)
    base.view(6).fill_(1.0)
    np.testing.assert_array_equal(base.numpy(), np.ones((2, 3), dtype=np.float32))
    base[0].add_(2.0)  # basic indexing gives a view, as in torch
    ref = torch.ones(2, 3)
    ref[0].add_(2.0)
    np.testing.assert_array_equal(base.numpy(), ref.numpy())


LEAF_INPLACE = {
    "add_": lambda t: t.add_(1.0),
    "sub_": lambda t: t.sub_(1.0),
    "mul_": lambda t: t.mul_(2.0),
    "div_": lambda t: t.div_(2.0),
    "zero_": lambda t: t.zero_(),
    "fill_": lambda t: t.fill_(3.0),
    "copy_": lambda t: t.copy_(distrain.ones(3)),
    "clamp_": lambda t: t.clamp_(0.0, 1.0),
    "iadd": lambda t: operator.iadd(t, 1.0),
    "imul": lambda t: operator.imul(t, 2.0),
    "setitem": lambda t: t.__setitem__(0, 5.0),
}
LEAF_EXPECTED = {
    "add_": [2.5, -1.0, 1.5], "sub_": [0.5, -3.0, -0.5], "mul_": [3.0, -4.0, 1.0], "div_": [0.75, -1.0, 0.25],
    "zero_": [0.0, 0.0, 0.0], "fill_": [3.0, 3.0, 3.0], "copy_": [1.0, 1.0, 1.0], "clamp_": [1.0, 0.0, 0.5],
    "iadd": [2.5, -1.0, 1.5], "imul": [3.0, -4.0, 1.0], "setitem": [5.0, -2.0, 0.5],
}


@pytest.mark.parametrize("case", sorted(LEAF_INPLACE))
def test_inplace_on_leaf_requiring_grad(case):
    start = [1.5, -2.0, 0.5]
    w = distrain.tensor(start, requires_grad=True)
    with pytest.raises(distrain.AutogradError):
        LEAF_INPLACE[case](w)
    np.testing.assert_array_equal(host(w), start)  # refused before touching the data
    with distrain.no_grad():
        LEAF_INPLACE[case](w)
    np.testing.assert_allclose(host(w), LEAF_EXPECTED[case])
    assert w.requires_grad and w.is_leaf and w.grad_fn is None
    # torch agrees on the values under no_grad
    wt = torch.tensor(start, requires_grad=True)
    with torch.no_grad():
        torch_case = {"copy_": lambda t: t.copy_(torch.ones(3))}.get(case, LEAF_INPLACE[case])
        torch_case(wt)
    np.testing.assert_allclose(host(w), wt.detach().numpy())


# ----------------------------------------------------------------------------- scalar type promotion

# torch treats Python numbers, NumPy scalars and 0-dim tensors as "wrapped numbers": they
# never widen a dimensioned tensor of the same category (float32 * np.float64(2) is float32).
SCALAR_PROMOTION = {
    "f32_times_py_float": (lambda L: L.ones(3), lambda: 2.5),
    "f16_times_py_float": (lambda L: L.ones(3, dtype=L.float16), lambda: 2.5),
    "i64_times_py_float": (lambda L: L.ones(3, dtype=L.int64), lambda: 2.5),
    "i32_plus_py_int": (lambda L: L.ones(3, dtype=L.int32), lambda: 2),
    "f32_times_np_float64": (lambda L: L.ones(3), lambda: np.float64(2.5)),
    "f32_div_np_sqrt": (lambda L: L.ones(3), lambda: np.sqrt(4.0)),  # e.g. attention's / np.sqrt(d_k)
    "f16_plus_np_float32": (lambda L: L.ones(3, dtype=L.float16), lambda: np.float32(1.5)),
    "i64_times_np_float64": (lambda L: L.ones(3, dtype=L.int64), lambda: np.float64(0.5)),
    "f32_times_np_int64": (lambda L: L.ones(3), lambda: np.int64(3)),
    "f32_times_0dim_f64_tensor": (lambda L: L.ones(3), lambda L=None: "zero_dim_f64"),
}
BINARY_OPS = {"mul": operator.mul, "truediv": operator.truediv, "rmul": lambda a, b: b * a, "rsub": lambda a, b: b - a}


@pytest.mark.parametrize("op", sorted(BINARY_OPS))
@pytest.mark.parametrize("case", sorted(SCALAR_PROMOTION))
def test_scalar_operands_do_not_widen_dtype(case, op):
    make_tensor, make_scalar = SCALAR_PROMOTION[case]
    f = BINARY_OPS[op]

    def run(lib):
        scalar = make_scalar()
        if scalar == "zero_dim_f64":
            scalar = lib.tensor(2.5, dtype=lib.float64)
        return f(make_tensor(lib), scalar)

    ref = run(torch)
    out = run(distrain)
    assert out.dtype == np.dtype(str(ref.dtype).replace("torch.", "")), f"torch gives {ref.dtype}"
    np.testing.assert_allclose(host(out).astype(np.float64), ref.numpy().astype(np.float64), rtol=1e-3)


# ----------------------------------------------------------------------------- comparisons

COMPARISONS = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("op", COMPARISONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("other_kind", ["tensor", "broadcast", "scalar", "reflected"])
def test_comparisons_give_bool_tensors(op, other_kind, device):
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], dtype=np.float32)
    b = np.array([[1.0, 3.0, 2.0], [3.0, 1.0, 1.0]], dtype=np.float32)
    x = distrain.tensor(a, device=device, requires_grad=True)
    if other_kind == "tensor":
        out, ref = op(x, distrain.tensor(b, device=device)), op(a, b)
    elif other_kind == "broadcast":
        out, ref = op(x, distrain.tensor(b[0], device=device)), op(a, b[0])
    elif other_kind == "scalar":
        out, ref = op(x, 2.0), op(a, 2.0)
    else:
        out, ref = op(2.0, x), op(2.0, a)
    assert isinstance(out, distrain.Tensor)
    assert out.dtype == distrain.bool
    assert out.requires_grad is False
    assert out.grad_fn is None
    assert str(out.device) == device
    np.testing.assert_array_equal(host(out), ref)


def test_comparison_int_tensors():
    x = distrain.tensor([1, 5, 3])
    y = distrain.tensor([2, 5, 1])
    np.testing.assert_array_equal(host(x < y), [True, False, False])
    np.testing.assert_array_equal(host(x == y), [False, True, False])


# ----------------------------------------------------------------------------- dtype errors

@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_requires_grad_on_non_float_raises(dtype):
    with pytest.raises(distrain.DTypeError):
        distrain.tensor([1, 0], dtype=getattr(distrain, dtype), requires_grad=True)
    with pytest.raises(distrain.DTypeError):
        distrain.zeros(2, dtype=getattr(distrain, dtype), requires_grad=True)
    t = distrain.tensor([1, 0], dtype=getattr(distrain, dtype))
    with pytest.raises(distrain.DTypeError):
        t.requires_grad_()
    with pytest.raises(distrain.DTypeError):
        t.requires_grad = True
    assert t.requires_grad is False
    # the error is also a TypeError, as the API promises
    with pytest.raises(TypeError):
        t.requires_grad_()


def test_dtype_error_message_names_dtype():
    with pytest.raises(distrain.DTypeError, match="int64"):
        distrain.tensor([1, 2], requires_grad=True)


def test_backward_on_integer_tensor_raises_dtype_error():
    x = distrain.tensor([1, 2, 3])
    with pytest.raises(distrain.DTypeError):
        x.sum().backward()


def test_backward_with_integer_gradient_raises_dtype_error():
    x = distrain.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(distrain.DTypeError):
        y.backward(distrain.tensor([1, 1]))


# ----------------------------------------------------------------------------- devices

@pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs cupy and a CUDA device")
@pytest.mark.parametrize("op", [operator.add, operator.mul, operator.matmul, lambda a, b: a.add_(b)],
                         ids=["add", "mul", "matmul", "add_"])
def test_mixing_devices_raises_device_error(op):
    a = distrain.ones(2, 2)
    b = distrain.ones(2, 2, device="cuda:0")
    for x, y in ((a, b), (b, a)):
        with pytest.raises(distrain.DeviceError) as info:
            op(x, y)
        msg = str(info.value)
        assert "cpu" in msg and "cuda" in msg
        assert isinstance(info.value, RuntimeError)


@pytest.mark.skipif(CUDA_AVAILABLE, reason="checks the message shown where there is no GPU")
@pytest.mark.parametrize(
    "call",
    [lambda: distrain.zeros(2, device="cuda"),
     lambda: distrain.tensor([1.0], device="cuda:0"),
     lambda: distrain.ones(2).to("cuda"),
     lambda: distrain.ones(2).cuda()],
    ids=["zeros", "tensor", "to", "cuda"],
)
def test_cuda_missing_tells_how_to_install(call):
    assert distrain.cuda.is_available() is False
    with pytest.raises(distrain.DistrainError) as info:
        call()
    # the install command, quoted for the shell or not
    assert re.search(r"pip install ['\"]?distrain\[gpu\]", str(info.value)), str(info.value)
