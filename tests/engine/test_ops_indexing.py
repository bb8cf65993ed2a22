"""Indexing against PyTorch: basic (ints, slices with steps, None, Ellipsis), advanced integer
indexing (gradients accumulate over repeated indices), boolean masks, gather, index_select,
and __setitem__."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import distrain

from .oracle import (
    FLOAT_DTYPES,
    HYPOTHESIS,
    check_finite_differences,
    check_op_against_torch,
    check_second_order_against_torch,
    pair,
    to_distrain,
    to_numpy,
    to_torch,
)

SHAPE = (4, 5, 6)

# name -> key(lib): the same key built with distrain or torch tensors
BASIC_KEYS = {
    "int": lambda lib: 1,
    "int_neg": lambda lib: -1,
    "two_ints": lambda lib: (1, 2),
    "three_ints": lambda lib: (3, -2, 0),
    "slice": lambda lib: slice(1, 3),
    "slice_open": lambda lib: slice(2, None),
    "slice_neg_start": lambda lib: slice(-3, None),
    "slice_step": lambda lib: slice(None, None, 2),
    "slice_start_step": lambda lib: (slice(1, None, 2), slice(None, None, 3)),
    "slice_step_past_end": lambda lib: (slice(None), slice(0, 10, 4)),
    "slice_empty": lambda lib: slice(3, 3),
    "int_then_slice": lambda lib: (1, slice(None), slice(0, 6, 3)),
    "slice_then_int": lambda lib: (slice(None, None, 2), 1),
    "none_front": lambda lib: None,
    "none_middle": lambda lib: (slice(None), None, slice(1, 5, 2)),
    "none_with_int": lambda lib: (None, 1, Ellipsis, None),
    "ellipsis": lambda lib: Ellipsis,
    "ellipsis_int": lambda lib: (Ellipsis, 2),
    "int_ellipsis": lambda lib: (0, Ellipsis),
    "ellipsis_slice_step": lambda lib: (Ellipsis, slice(1, None, 2)),
    "int_ellipsis_int": lambda lib: (2, Ellipsis, -1),
}

ADVANCED_KEYS = {
    "list_repeated": lambda lib: [0, 2, 0],
    "list_negative": lambda lib: [-1, 0, -1, 3],
    "tensor_repeated": lambda lib: lib.tensor([0, 2, 0, 0]),
    "tensor_2d_index": lambda lib: lib.tensor([[0, 1], [3, 3]]),
    "two_lists_pairs": lambda lib: ([0, 1, 1, 0], [2, 2, 4, 2]),
    "three_tensors": lambda lib: (lib.tensor([0, 0, 3]), lib.tensor([1, 1, 4]), lib.tensor([5, 5, 0])),
    "broadcast_index_tensors": lambda lib: (lib.tensor([[0], [2]]), lib.tensor([1, 1, 3])),
    "slice_then_list": lambda lib: (slice(None), [1, 1, 3]),
    "slice_then_tensor_then_int": lambda lib: (slice(None), lib.tensor([4, 0, 4]), 2),
    "int_then_list": lambda lib: (0, [1, 1, 2]),
    "ellipsis_then_list": lambda lib: (Ellipsis, [5, 0, 5, 5]),
    "list_then_slice_step": lambda lib: ([3, 3, 1], slice(None, None, 2)),
    "separated_advanced_indices": lambda lib: ([0, 1, 0], slice(None), [2, 2, 5]),
    "bool_mask_full": lambda lib: lib.tensor(_mask(SHAPE, 0)),
    "bool_mask_rows": lambda lib: lib.tensor(np.array([True, False, True, True])),
    "bool_mask_two_dims": lambda lib: lib.tensor(_mask(SHAPE[:2], 1)),
    "bool_mask_after_slice": lambda lib: (slice(None), lib.tensor(np.array([False, True, True, False, True]))),
    "bool_mask_all_false": lambda lib: lib.tensor(np.zeros(4, dtype=bool)),
    "bool_list": lambda lib: [True, False, True, True],
    "zero_dim_int_tensor": lambda lib: lib.tensor(2),
    "zero_dim_int_tensor_in_tuple": lambda lib: (slice(None), lib.tensor(-1)),
    "negative_int_tensor": lambda lib: lib.tensor([-1, -4, -1]),
    "empty_list": lambda lib: [],
    "zero_dim_bool_tensor": lambda lib: lib.tensor(True),
}


def _mask(shape, seed):
    return np.random.default_rng(100 + seed).random(shape) > 0.5


def _data(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _getitem(key_fn, device):
    d_key = _on_device(key_fn(distrain), device)
    t_key = key_fn(torch)
    return (lambda x: x[d_key]), (lambda x: x[t_key])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(BASIC_KEYS) + list(ADVANCED_KEYS))
def test_getitem_matches_torch(name, dtype, device):
    key_fn = {**BASIC_KEYS, **ADVANCED_KEYS}[name]
    check_op_against_torch(*_getitem(key_fn, device), [_data()], dtype, device)


@pytest.mark.parametrize("name", list(BASIC_KEYS) + list(ADVANCED_KEYS))
def test_getitem_finite_differences(name, device):
    key_fn = {**BASIC_KEYS, **ADVANCED_KEYS}[name]
    key = _on_device(key_fn(distrain), device)
    check_finite_differences(lambda x: x[key] * 1.0, [_data((4, 5, 6), seed=1)], device)


@pytest.mark.parametrize("name", ["strided", "transposed"])
def test_getitem_of_non_contiguous_view(name, device):
    view = {"strided": lambda t: t[::2], "transposed": lambda t: t.permute(2, 1, 0)}[name]
    base_shape = {"strided": (8, 5, 6), "transposed": (6, 5, 4)}[name]
    for key_fn in (BASIC_KEYS["slice_start_step"], ADVANCED_KEYS["list_repeated"], ADVANCED_KEYS["bool_mask_full"]):
        d_key, t_key = _on_device(key_fn(distrain), device), key_fn(torch)
        check_op_against_torch(lambda x: view(x)[d_key], lambda x: view(x)[t_key], [_data(base_shape)], np.float64, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_mask_from_a_comparison_of_the_input(dtype, device):
    check_op_against_torch(*pair(lambda lib, x: x[x > 0.3] * 2), [_data()], dtype, device)
    check_op_against_torch(*pair(lambda lib, x: x[:, (x[0] > 0).any(1)]), [_data()], dtype, device)


@pytest.mark.parametrize("key", [None, Ellipsis, ()], ids=["none", "ellipsis", "empty_tuple"])
def test_indexing_a_zero_dim_tensor(key, device):
    check_op_against_torch(lambda x: x[key], lambda x: x[key], [np.array(1.5)], np.float64, device)


def test_repeated_index_gradient_accumulates(device):
    x = to_distrain(np.arange(5.0), device, requires_grad=True)
    y = x[[1, 1, 1, 3, 1]]
    y.backward(to_distrain(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), device))
    np.testing.assert_array_equal(to_numpy(x.grad), [0.0, 11.0, 0.0, 4.0, 0.0])


def test_indexing_the_same_tensor_twice_accumulates(device):
    f = lambda lib, x: x[0] * x[1:3].sum(0) + x[[0, 0]].sum(0)  # noqa: E731
    check_op_against_torch(*pair(f), [_data((4, 5))], np.float64, device)


# --- gather / index_select -------------------------------------------------------------------

GATHER_CASES = {
    "dim1": ((3, 4), 1, np.array([[0, 0, 3, 1, 0], [2, 2, 2, 2, 2], [1, 3, 0, 1, 3]])),
    "dim0": ((3, 4), 0, np.array([[0, 1, 2, 0], [0, 0, 0, 0]])),
    "dim_neg": ((3, 4), -1, np.array([[3], [0], [3]])),
    "3d_dim1": ((2, 3, 4), 1, np.array([[[0, 2, 2, 1]], [[1, 1, 0, 2]]])),
    "3d_dim2_same_shape": ((2, 3, 4), 2, np.random.default_rng(3).integers(0, 4, size=(2, 3, 4))),
    "index_smaller_than_input": ((3, 4), 1, np.array([[1, 1, 0], [3, 2, 3]])),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("form", ["function", "method"])
@pytest.mark.parametrize("name", list(GATHER_CASES))
def test_gather_matches_torch(name, form, dtype, device):
    shape, dim, index = GATHER_CASES[name]
    if form == "function":
        f = lambda lib, x, i: lib.gather(x, dim, i)  # noqa: E731
    else:
        f = lambda lib, x, i: x.gather(dim, i)  # noqa: E731
    check_op_against_torch(*pair(f), [_data(shape), index.astype(np.int64)], dtype, device)


@pytest.mark.parametrize("name", list(GATHER_CASES))
def test_gather_finite_differences(name, device):
    shape, dim, index = GATHER_CASES[name]
    i = to_distrain(index.astype(np.int64), device)
    check_finite_differences(lambda x: x.gather(dim, i), [_data(shape, seed=1)], device)


INDEX_SELECT_CASES = {
    "dim0_repeated": ((4, 3), 0, [2, 0, 2, 2]),
    "dim1": ((4, 3), 1, [1, 2]),
    "dim_neg_repeated": ((2, 3, 4), -1, [3, 3, 0]),
    "dim1_3d": ((2, 3, 4), 1, [2, 2]),
    "single": ((5,), 0, [4]),
    "zero_dim_index": ((4, 3), 0, 2),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("form", ["function", "method"])
@pytest.mark.parametrize("name", list(INDEX_SELECT_CASES))
def test_index_select_matches_torch(name, form, dtype, device):
    shape, dim, index = INDEX_SELECT_CASES[name]
    if form == "function":
        f = lambda lib, x, i: lib.index_select(x, dim, i)  # noqa: E731
    else:
        f = lambda lib, x, i: x.index_select(dim, i)  # noqa: E731
    check_op_against_torch(*pair(f), [_data(shape), np.array(index, dtype=np.int64)], dtype, device)


@pytest.mark.parametrize("name", list(INDEX_SELECT_CASES))
def test_index_select_finite_differences(name, device):
    shape, dim, index = INDEX_SELECT_CASES[name]
    i = to_distrain(np.array(index, dtype=np.int64), device)
    check_finite_differences(lambda x: x.index_select(dim, i), [_data(shape, seed=1)], device)


# --- __setitem__ -----------------------------------------------------------------------------

# name -> (key(lib), value(lib)) ; value None means a Python scalar
SETITEM_CASES = {
    "int_scalar": (lambda lib: 1, lambda lib: 5.0),
    "int_int_scalar": (lambda lib: (1, 2), lambda lib: -3.0),
    "slice_tensor": (lambda lib: (slice(None), slice(1, 3)), lambda lib: lib.tensor(_data((4, 2, 6), 7))),
    "step_slice_tensor": (lambda lib: (1, slice(None, None, 2)), lambda lib: lib.tensor(_data((3, 6), 8))),
    "ellipsis_broadcast": (lambda lib: (Ellipsis, 0), lambda lib: lib.tensor(_data((5,), 9))),
    "broadcast_row": (lambda lib: slice(None), lambda lib: lib.tensor(_data((6,), 10))),
    "none_key": (lambda lib: (None, 2), lambda lib: 0.5),
    "list_scalar": (lambda lib: [0, 2], lambda lib: 1.0),
    "list_tensor": (lambda lib: [3, 1], lambda lib: lib.tensor(_data((2, 5, 6), 11))),
    "index_pairs_tensor": (lambda lib: ([0, 3], [4, 1]), lambda lib: lib.tensor(_data((2, 6), 12))),
    "mask_scalar": (lambda lib: lib.tensor(_mask(SHAPE, 2)), lambda lib: 0.0),
    "mask_values": (lambda lib: lib.tensor(_mask(SHAPE, 3)), lambda lib: lib.tensor(_data((int(_mask(SHAPE, 3).sum()),), 13))),
    "mask_rows": (lambda lib: lib.tensor(np.array([True, False, False, True])), lambda lib: 2.0),
    "int_python_int_value": (lambda lib: 0, lambda lib: 7),
}


def _on_device(obj, device):
    if isinstance(obj, distrain.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_on_device(o, device) for o in obj)
    return obj


def _values(value_fn, dtype, device):
    """The assigned value for distrain and for torch: a Python scalar, or the same numbers as tensors."""
    tvalue = value_fn(torch)
    if not isinstance(tvalue, torch.Tensor):
        return tvalue, tvalue
    array = tvalue.numpy().astype(dtype)
    return to_distrain(array, device), to_torch(array)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(SETITEM_CASES))
def test_setitem_forward_matches_torch(name, dtype, device):
    key_fn, value_fn = SETITEM_CASES[name]
    x = to_distrain(_data().astype(dtype), device)
    t = to_torch(_data().astype(dtype))
    value, tvalue = _values(value_fn, dtype, device)
    x[_on_device(key_fn(distrain), device)] = value
    t[key_fn(torch)] = tvalue
    assert x.dtype == np.dtype(dtype)
    assert tuple(x.shape) == SHAPE
    np.testing.assert_array_equal(to_numpy(x), t.numpy())


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["slice_tensor", "list_tensor", "mask_values", "int_scalar", "ellipsis_broadcast"])
def test_setitem_gradient_matches_torch(name, dtype, device):
    """Assigning into a non-leaf: the overwritten part gets no gradient, the assigned value does."""
    key_fn, value_fn = SETITEM_CASES[name]
    d_key, t_key = _on_device(key_fn(distrain), device), key_fn(torch)
    scalar = value_fn(torch)
    arrays = [_data()]
    if isinstance(scalar, torch.Tensor):
        arrays.append(scalar.numpy())

    def make(key):
        def op(x, *v):
            y = x * 2.0
            y[key] = v[0] * 3.0 if v else scalar
            return y * y

        return op

    check_op_against_torch(make(d_key), make(t_key), arrays, dtype, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_setitem_of_a_grad_value_into_a_constant_tensor(dtype, device):
    """y = zeros(...); y[1:3] = v * 2: y joins the graph, v gets the gradient of the written part."""
    v = np.random.default_rng(20).standard_normal((2, 4))

    def make(lib, dev):
        def op(v):
            y = lib.zeros((4, 4), dtype=v.dtype, device=dev)
            y[1:3] = v * 2.0
            return y.sum(0) * lib.arange(1, 5, device=dev)

        return op

    check_op_against_torch(make(distrain, device), make(torch, "cpu"), [v], dtype, device)


def test_setitem_casts_the_value_to_the_tensor_dtype(device):
    x = to_distrain(np.zeros((2, 3), dtype=np.float32), device)
    x[0] = to_distrain(np.array([1.0 / 3, 2.0, 3.0]), device)  # float64 value
    t = torch.zeros(2, 3)
    t[0] = torch.tensor([1.0 / 3, 2.0, 3.0], dtype=torch.float64)
    assert x.dtype == distrain.float32
    np.testing.assert_array_equal(to_numpy(x), t.numpy())
    y = to_distrain(np.zeros(3, dtype=np.int64), device)
    y[1] = 2.7  # float into an int tensor truncates, as in torch
    ty = torch.zeros(3, dtype=torch.int64)
    ty[1] = 2.7
    assert y.dtype == distrain.int64
    np.testing.assert_array_equal(to_numpy(y), ty.numpy())


@pytest.mark.parametrize(
    "name, f",
    [
        ("advanced_repeated", lambda lib, x: x[[0, 0, 2]] ** 3),
        ("basic", lambda lib, x: x[1:, ::2] ** 3),
        ("mask", lambda lib, x: x[x > 0] ** 3),
        ("gather", lambda lib, x: x.gather(1, lib.tensor([[0, 0, 3], [2, 1, 2], [3, 3, 3]])) ** 3),
        ("index_select", lambda lib, x: x.index_select(0, lib.tensor([2, 0, 2])) ** 3),
    ],
)
def test_indexing_second_derivative_matches_torch(name, f, device):
    if device != "cpu" and name in ("gather", "index_select"):
        pytest.skip("index tensors are built on the cpu in this table")
    check_second_order_against_torch(*pair(f), [_data((3, 4), seed=7)], np.float64, device)


@st.composite
def _index_keys(draw, shape):
    """A random key mixing ints, positive-step slices, None, an Ellipsis and at most one integer list."""
    key = []
    used_list = False
    dims = list(enumerate(shape))
    if draw(st.booleans()):  # leave a tail of dims to an Ellipsis
        dims = dims[: draw(st.integers(0, len(shape)))]
    for _, n in dims:
        if draw(st.integers(0, 5)) == 0:
            key.append(None)
        kind = draw(st.sampled_from(["int", "slice", "slice", "list", "full"]))
        if kind == "int":
            key.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start = draw(st.one_of(st.none(), st.integers(-n - 1, n + 1)))
            stop = draw(st.one_of(st.none(), st.integers(-n - 1, n + 1)))
            step = draw(st.one_of(st.none(), st.integers(1, 3)))
            key.append(slice(start, stop, step))
        elif kind == "list" and not used_list:
            used_list = True
            key.append(draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5)))
        else:
            key.append(slice(None))
    if len(dims) < len(shape):
        key.append(Ellipsis)
    return tuple(key)


def test_getitem_property_random_keys(device):
    @HYPOTHESIS
    @given(data=st.data(), seed=st.integers(0, 2**16))
    def run(data, seed):
        shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        key = data.draw(_index_keys(shape))
        check_op_against_torch(lambda x: x[key], lambda x: x[key], [_data(shape, seed)], np.float64, device, seed=seed)

    run()
