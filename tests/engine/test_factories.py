"""Tensor factories: shapes, default dtypes, devices, requires_grad, memory sharing, seeding.

Every expectation is checked against NumPy or PyTorch 2.13 (the reference the API follows).
"""
import numpy as np
import pytest
import torch

import distrain


def host(t):
    """A distrain tensor's values as a NumPy array on the host."""
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------- zeros/ones/empty/full

SHAPE_FORMS = [
    ((2, 3), (2, 3)),      # *size
    (((2, 3),), (2, 3)),   # a size tuple
    (([4, 1, 2],), (4, 1, 2)),  # a size list
    ((5,), (5,)),
    ((0,), (0,)),          # an empty tensor
    (((),), ()),           # a zero-dim tensor
]


@pytest.mark.parametrize("name,fill", [("zeros", 0.0), ("ones", 1.0), ("empty", None)])
@pytest.mark.parametrize("args,shape", SHAPE_FORMS)
def test_zeros_ones_empty_shape_dtype_values(name, fill, args, shape, device):
    t = getattr(distrain, name)(*args, device=device)
    assert isinstance(t, distrain.Tensor)
    assert t.shape == shape
    assert tuple(t.shape) == shape
    assert isinstance(t.shape, distrain.Size)
    assert isinstance(t.shape, tuple)
    assert t.dtype == distrain.float32
    assert str(t.device) == device
    assert t.requires_grad is False
    assert t.is_leaf is True
    assert t.grad is None
    assert t.grad_fn is None
    if fill is not None:
        np.testing.assert_array_equal(host(t), np.full(shape, fill, dtype=np.float32))
    # torch agrees on the shape for each call form
    assert tuple(getattr(torch, name)(*args).shape) == shape


@pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "int64", "bool"])
def test_zeros_ones_empty_dtype_kwarg(name, dtype, device):
    t = getattr(distrain, name)(3, 2, dtype=getattr(distrain, dtype), device=device)
    assert t.dtype == getattr(distrain, dtype)
    assert t.dtype == np.dtype(dtype)
    assert host(t).dtype == np.dtype(dtype)
    assert t.shape == (3, 2)
    if name != "empty":
        expected = getattr(np, name)((3, 2), dtype=dtype)
        np.testing.assert_array_equal(host(t), expected)


@pytest.mark.parametrize("name", ["zeros", "ones", "empty", "randn", "rand"])
def test_factory_requires_grad(name, device):
    t = getattr(distrain, name)(2, 3, requires_grad=True, device=device)
    assert t.requires_grad is True
    assert t.is_leaf is True
    assert t.grad_fn is None
    assert t.grad is None


def test_dtype_aliases_are_numpy_dtypes():
    assert distrain.float32 == np.dtype(np.float32)
    assert distrain.float64 == np.dtype(np.float64)
    assert distrain.float16 == np.dtype(np.float16)
    assert distrain.int32 == np.dtype(np.int32)
    assert distrain.int64 == np.dtype(np.int64)
    assert distrain.bool == np.dtype(np.bool_)
    assert distrain.float == distrain.float32
    assert distrain.double == distrain.float64
    assert distrain.half == distrain.float16
    assert distrain.long == distrain.int64
    assert distrain.int == distrain.int32


@pytest.mark.parametrize(
    "fill,dtype_kw,expected_dtype",
    [
        (2.5, None, "float32"),
        (7, None, "int64"),        # torch.full((2, 3), 7).dtype == torch.int64
        (True, None, "bool"),      # torch.full((2, 3), True).dtype == torch.bool
        (7, "float64", "float64"),
        (-1.5, "float16", "float16"),
    ],
)
def test_full(fill, dtype_kw, expected_dtype, device):
    kwargs = {} if dtype_kw is None else {"dtype": getattr(distrain, dtype_kw)}
    t = distrain.full((2, 3), fill, device=device, **kwargs)
    assert t.shape == (2, 3)
    assert t.dtype == np.dtype(expected_dtype)
    torch_kwargs = {} if dtype_kw is None else {"dtype": getattr(torch, dtype_kw)}
    ref = torch.full((2, 3), fill, **torch_kwargs)
    assert str(ref.dtype) == f"torch.{expected_dtype}"
    np.testing.assert_array_equal(host(t), ref.numpy())


def test_full_requires_grad():
    t = distrain.full((2,), 3.0, requires_grad=True)
    assert t.requires_grad and t.is_leaf
    (t * t).sum().backward()
    np.testing.assert_allclose(host(t.grad), [6.0, 6.0])


# ----------------------------------------------------------------------------- tensor / as_tensor / from_numpy

@pytest.mark.parametrize(
    "data,expected_dtype",
    [
        (1.5, "float32"),
        ([1.0, 2.0, 3.0], "float32"),
        ([[1.0, 2.0], [3.0, 4.0]], "float32"),
        (3, "int64"),
        ([1, 2, 3], "int64"),
        ([[1, 2], [3, 4]], "int64"),
        (True, "bool"),
        ([True, False], "bool"),
        ([1, 2.5], "float32"),       # mixed int/float list -> default float dtype
        (np.array([1.0, 2.0]), "float64"),   # numpy dtype is kept
        (np.array([1, 2], dtype=np.int32), "int32"),
        (np.array([1.0, 2.0], dtype=np.float16), "float16"),
    ],
)
def test_tensor_dtype_inference_matches_torch(data, expected_dtype, device):
    t = distrain.tensor(data, device=device)
    ref = torch.tensor(data)
    assert str(ref.dtype) == f"torch.{expected_dtype}"  # the reference itself
    assert t.dtype == np.dtype(expected_dtype)
    assert t.shape == tuple(ref.shape)
    assert str(t.device) == device
    np.testing.assert_array_equal(host(t), ref.numpy())


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool"])
def test_tensor_explicit_dtype(dtype, device):
    data = [[0, 1, 2], [3, 0, 5]]
    t = distrain.tensor(data, dtype=getattr(distrain, dtype), device=device)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(host(t), np.array(data).astype(dtype))


def test_tensor_scalar_is_zero_dim():
    t = distrain.tensor(2.5)
    assert t.shape == ()
    assert t.ndim == 0
    assert t.numel() == 1
    assert t.item() == 2.5


def test_tensor_copies_numpy_input():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = distrain.tensor(a)
    a[0, 0] = 100.0
    assert host(t)[0, 0] == 0.0
    assert not np.shares_memory(a, t.numpy())
    # and the other direction: changing the tensor leaves the array alone
    with distrain.no_grad():
        t.fill_(-1.0)
    assert a[1, 2] == 5.0


def test_tensor_requires_grad_kwarg():
    t = distrain.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf and t.grad_fn is None


def test_tensor_of_tensor_copies():
    src = distrain.tensor([1.0, 2.0])
    # torch warns on torch.tensor(tensor); distrain may too -- only the semantics matter here
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = distrain.tensor(src)
    with distrain.no_grad():
        src.fill_(9.0)
    np.testing.assert_array_equal(host(t), [1.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.bool_])
def test_from_numpy_shares_memory(dtype):
    a = np.arange(6).reshape(2, 3).astype(dtype)
    t = distrain.from_numpy(a)
    assert t.dtype == np.dtype(dtype)
    assert t.shape == (2, 3)
    assert str(t.device) == "cpu"
    assert t.requires_grad is False
    assert np.shares_memory(a, t.numpy())
    # mutating the numpy array is visible through the tensor
    a[1, 1] = 1 if dtype is np.bool_ else 42
    assert host(t)[1, 1] == a[1, 1]
    # and an in-place op on the tensor is visible in the array
    fill = False if dtype is np.bool_ else 7
    t.fill_(fill)
    np.testing.assert_array_equal(a, np.full((2, 3), fill, dtype=dtype))


def test_from_numpy_then_numpy_roundtrip_is_same_memory():
    a = np.linspace(0.0, 1.0, 5)
    t = distrain.from_numpy(a)
    b = t.numpy()
    b[0] = -3.0
    assert a[0] == -3.0


@pytest.mark.parametrize("data", [[1.0, 2.0], [1, 2], np.array([1.0, 2.0]), np.array([3, 4], dtype=np.int32)])
def test_as_tensor_values_and_dtype_match_torch(data):
    t = distrain.as_tensor(data)
    ref = torch.as_tensor(data)
    assert t.dtype == np.dtype(str(ref.dtype).replace("torch.", ""))
    np.testing.assert_array_equal(host(t), ref.numpy())


def test_as_tensor_with_dtype():
    t = distrain.as_tensor([1, 2, 3], dtype=distrain.float64)
    assert t.dtype == distrain.float64
    np.testing.assert_array_equal(host(t), [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- random factories and seeding

RANDOM_CALLS = {
    "randn": lambda **kw: distrain.randn(3, 4, **kw),
    "rand": lambda **kw: distrain.rand(3, 4, **kw),
    "randint": lambda **kw: distrain.randint(0, 10, (3, 4), **kw),
}


@pytest.mark.parametrize("name", sorted(RANDOM_CALLS))
def test_manual_seed_reproducible_and_seed_dependent(name, device):
    make = RANDOM_CALLS[name]
    distrain.manual_seed(0)
    a1 = host(make(device=device))
    a2 = host(make(device=device))
    distrain.manual_seed(0)
    b1 = host(make(device=device))
    b2 = host(make(device=device))
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # the generator advances
    distrain.manual_seed(1)
    c1 = host(make(device=device))
    assert not np.array_equal(a1, c1)  # a different seed gives different numbers


def test_manual_seed_covers_every_random_factory():
    def draw():
        x = distrain.zeros(50)
        return [host(distrain.randn(50)), host(distrain.rand(50)), host(distrain.randint(5, (50,))),
                host(distrain.randn_like(x)), host(distrain.rand_like(x)), host(distrain.randint_like(x, 5))]

    distrain.manual_seed(123)
    first = draw()
    distrain.manual_seed(123)
    second = draw()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("args", [(3, 4), ((3, 4),)])
def test_randn_and_rand_shape_dtype_range(args, device):
    distrain.manual_seed(5)
    n = distrain.randn(*args, device=device)
    r = distrain.rand(*args, device=device)
    for t in (n, r):
        assert t.shape == (3, 4)
        assert t.dtype == distrain.float32
        assert str(t.device) == device
        assert t.requires_grad is False
    assert np.all(host(r) >= 0.0) and np.all(host(r) < 1.0)
    big = host(distrain.randn(20000, device=device))
    assert abs(big.mean()) < 0.05
    assert abs(big.std() - 1.0) < 0.05
    bigr = host(distrain.rand(20000, device=device))
    assert abs(bigr.mean() - 0.5) < 0.02


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_randn_rand_dtype_kwarg(dtype):
    assert distrain.randn(2, 2, dtype=getattr(distrain, dtype)).dtype == np.dtype(dtype)
    assert distrain.rand(2, 2, dtype=getattr(distrain, dtype)).dtype == np.dtype(dtype)


@pytest.mark.parametrize(
    "args,low,high",
    [((0, 10, (1000,)), 0, 10), ((-3, 3, (40, 25)), -3, 3), ((7, (500,)), 0, 7)],
)
def test_randint_range_dtype_shape(args, low, high, device):
    distrain.manual_seed(2)
    t = distrain.randint(*args, device=device)
    ref = torch.randint(*args)
    assert t.dtype == distrain.int64
    assert ref.dtype == torch.int64
    assert t.shape == tuple(ref.shape)
    v = host(t)
    assert v.min() >= low and v.max() < high
    assert set(np.unique(v).tolist()) == set(range(low, high))  # every value is hit with this many draws


# ----------------------------------------------------------------------------- arange / linspace / eye

@pytest.mark.parametrize(
    "args",
    [(5,), (2, 9), (1, 10, 3), (10, 0, -2), (0.0, 1.0, 0.1), (0, 1, 0.25), (-1.5, 2.0), (0, 5.0)],
)
def test_arange_matches_numpy_and_torch_dtype(args, device):
    t = distrain.arange(*args, device=device)
    ref = torch.arange(*args)
    assert t.dtype == np.dtype(str(ref.dtype).replace("torch.", ""))
    assert t.shape == tuple(ref.shape)
    np.testing.assert_allclose(host(t), np.arange(*args), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(host(t), ref.numpy(), rtol=1e-6, atol=1e-6)


def test_arange_dtype_and_requires_grad():
    t = distrain.arange(4, dtype=distrain.float64, requires_grad=True)
    assert t.dtype == distrain.float64 and t.requires_grad
    np.testing.assert_array_equal(host(t), [0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("args", [(0, 1, 5), (-2.0, 3.0, 11), (1, 1, 3), (0, 10, 1), (5, -5, 4)])
def test_linspace_matches_numpy(args, device):
    t = distrain.linspace(*args, device=device)
    assert t.dtype == distrain.float32
    assert t.shape == (args[2],)
    np.testing.assert_allclose(host(t), np.linspace(*args), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(host(t), torch.linspace(*args).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2), (1,)])
def test_eye_matches_numpy(args, device):
    t = distrain.eye(*args, device=device)
    assert t.dtype == distrain.float32
    np.testing.assert_array_equal(host(t), np.eye(*args, dtype=np.float32))
    np.testing.assert_array_equal(host(t), torch.eye(*args).numpy())


def test_eye_dtype():
    t = distrain.eye(3, dtype=distrain.int64)
    assert t.dtype == distrain.int64
    np.testing.assert_array_equal(host(t), np.eye(3, dtype=np.int64))


# ----------------------------------------------------------------------------- *_like

@pytest.mark.parametrize("src_dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize(
    "name,extra,fill",
    [("zeros_like", (), 0), ("ones_like", (), 1), ("empty_like", (), None), ("full_like", (3,), 3)],
)
def test_like_factories_keep_shape_dtype_device(name, extra, fill, src_dtype, device):
    src = distrain.ones(2, 5, dtype=getattr(distrain, src_dtype), device=device)
    t = getattr(distrain, name)(src, *extra)
    assert t.shape == (2, 5)
    assert t.dtype == np.dtype(src_dtype)
    assert str(t.device) == device
    assert t.requires_grad is False
    if fill is not None:
        np.testing.assert_array_equal(host(t), np.full((2, 5), fill, dtype=src_dtype))


def test_like_factories_do_not_inherit_requires_grad_or_memory():
    src = distrain.randn(3, requires_grad=True)
    z = distrain.zeros_like(src)
    assert z.requires_grad is False and z.is_leaf
    assert not np.shares_memory(z.numpy(), src.detach().numpy())
    z2 = distrain.ones_like(src, requires_grad=True)
    assert z2.requires_grad is True and z2.is_leaf


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "rand_like", "randn_like"])
def test_like_dtype_override(name):
    src = distrain.zeros(4, dtype=distrain.float32)
    t = getattr(distrain, name)(src, dtype=distrain.float64)
    assert t.dtype == distrain.float64
    assert t.shape == (4,)


@pytest.mark.parametrize("name", ["rand_like", "randn_like"])
def test_random_like(name, device):
    src = distrain.zeros(300, 7, dtype=distrain.float64, device=device)
    t = getattr(distrain, name)(src)
    assert t.shape == (300, 7)
    assert t.dtype == distrain.float64
    assert str(t.device) == device
    v = host(t)
    if name == "rand_like":
        assert v.min() >= 0.0 and v.max() < 1.0
    else:
        assert abs(v.mean()) < 0.1 and abs(v.std() - 1.0) < 0.1


@pytest.mark.parametrize("src_dtype", ["int64", "float32"])
@pytest.mark.parametrize("args,low,high", [((6,), 0, 6), ((-2, 3), -2, 3)])
def test_randint_like(args, low, high, src_dtype, device):
    src = distrain.zeros(200, 3, dtype=getattr(distrain, src_dtype), device=device)
    t = distrain.randint_like(src, *args)
    ref = torch.randint_like(torch.zeros(200, 3, dtype=getattr(torch, src_dtype)), *args)
    assert ref.dtype == getattr(torch, src_dtype)  # torch keeps the source dtype
    assert t.shape == tuple(ref.shape)
    assert t.dtype == np.dtype(src_dtype)
    v = host(t)
    np.testing.assert_array_equal(v, np.round(v))  # integer values even in a float tensor
    assert v.min() >= low and v.max() < high
    assert set(np.unique(v).tolist()) == set(range(low, high))
