"""Shape ops against PyTorch (forward and backward): reshape view flatten transpose t permute T
squeeze unsqueeze expand repeat cat stack split chunk, and their shape errors."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import distrain

from .oracle import (
    FLOAT_DTYPES,
    HYPOTHESIS,
    assert_shape_error,
    check_finite_differences,
    check_op_against_torch,
    pair,
    to_distrain,
)

# name -> (input shape, f(lib, x))
SINGLE_INPUT = {
    "reshape": ((2, 3, 4), lambda lib, x: x.reshape(4, 6)),
    "reshape_tuple": ((2, 3, 4), lambda lib, x: x.reshape((6, 4))),
    "reshape_infer": ((2, 3, 4), lambda lib, x: x.reshape(-1, 2)),
    "reshape_infer_middle": ((2, 3, 4), lambda lib, x: x.reshape(2, -1, 3)),
    "reshape_flat": ((2, 3, 4), lambda lib, x: x.reshape(-1)),
    "reshape_function": ((2, 3, 4), lambda lib, x: lib.reshape(x, (3, -1))),
    "reshape_to_scalar": ((1, 1), lambda lib, x: x.reshape(())),
    "reshape_from_scalar": ((), lambda lib, x: x.reshape(1, 1, 1)),
    "view": ((2, 3, 4), lambda lib, x: x.view(6, 4)),
    "view_infer": ((2, 3, 4), lambda lib, x: x.view(-1, 12)),
    "view_tuple": ((2, 3, 4), lambda lib, x: x.view((4, -1))),
    "view_flat": ((2, 3, 4), lambda lib, x: x.view(-1)),
    "flatten": ((2, 3, 4), lambda lib, x: x.flatten()),
    "flatten_start": ((2, 3, 4, 5), lambda lib, x: x.flatten(1)),
    "flatten_start_end": ((2, 3, 4, 5), lambda lib, x: x.flatten(1, 2)),
    "flatten_neg": ((2, 3, 4, 5), lambda lib, x: x.flatten(start_dim=-3, end_dim=-2)),
    "flatten_function": ((2, 3, 4), lambda lib, x: lib.flatten(x, 0, 1)),
    "flatten_scalar": ((), lambda lib, x: x.flatten()),
    "transpose": ((2, 3, 4), lambda lib, x: x.transpose(0, 2)),
    "transpose_neg": ((2, 3, 4), lambda lib, x: x.transpose(-1, -2)),
    "transpose_same": ((2, 3, 4), lambda lib, x: x.transpose(1, 1)),
    "transpose_function": ((2, 3, 4), lambda lib, x: lib.transpose(x, 1, 0)),
    "t": ((3, 4), lambda lib, x: x.t()),
    "t_1d": ((4,), lambda lib, x: x.t()),
    "T": ((3, 4), lambda lib, x: x.T),
    "permute": ((2, 3, 4), lambda lib, x: x.permute(2, 0, 1)),
    "permute_tuple": ((2, 3, 4), lambda lib, x: x.permute((1, 2, 0))),
    "permute_neg": ((2, 3, 4), lambda lib, x: x.permute(-1, 0, -2)),
    "permute_function": ((2, 3, 4, 5), lambda lib, x: lib.permute(x, (3, 1, 0, 2))),
    "squeeze_all": ((1, 3, 1, 4), lambda lib, x: x.squeeze()),
    "squeeze_dim": ((1, 3, 1, 4), lambda lib, x: x.squeeze(2)),
    "squeeze_dim_neg": ((3, 4, 1), lambda lib, x: x.squeeze(-1)),
    "squeeze_non_one_is_noop": ((1, 3, 1, 4), lambda lib, x: x.squeeze(1)),
    "squeeze_function": ((1, 3, 1, 4), lambda lib, x: lib.squeeze(x, 0)),
    "squeeze_to_scalar": ((1, 1), lambda lib, x: x.squeeze()),
    "unsqueeze_front": ((3, 4), lambda lib, x: x.unsqueeze(0)),
    "unsqueeze_middle": ((3, 4), lambda lib, x: x.unsqueeze(1)),
    "unsqueeze_end": ((3, 4), lambda lib, x: x.unsqueeze(2)),
    "unsqueeze_neg": ((3, 4), lambda lib, x: x.unsqueeze(-1)),
    "unsqueeze_neg_front": ((3, 4), lambda lib, x: x.unsqueeze(-3)),
    "unsqueeze_function": ((3, 4), lambda lib, x: lib.unsqueeze(x, 1)),
    "unsqueeze_scalar": ((), lambda lib, x: x.unsqueeze(0)),
    "expand": ((3, 1), lambda lib, x: x.expand(3, 4)),
    "expand_new_dims": ((3, 1), lambda lib, x: x.expand(2, 3, 5)),
    "expand_minus_one": ((3, 1), lambda lib, x: x.expand(2, -1, 4)),
    "expand_tuple": ((1, 4), lambda lib, x: x.expand((3, 4))),
    "expand_same": ((3, 4), lambda lib, x: x.expand(3, 4)),
    "expand_scalar": ((), lambda lib, x: x.expand(2, 3)),
    "repeat": ((2, 3), lambda lib, x: x.repeat(2, 3)),
    "repeat_new_dims": ((2, 3), lambda lib, x: x.repeat(4, 1, 2)),
    "repeat_ones": ((2, 3), lambda lib, x: x.repeat(1, 1)),
    "repeat_tuple": ((3,), lambda lib, x: x.repeat((2, 2))),
    "split_int": ((5, 3), lambda lib, x: x.split(2)),
    "split_int_even": ((6, 3), lambda lib, x: x.split(3)),
    "split_int_dim": ((3, 7), lambda lib, x: x.split(3, dim=1)),
    "split_int_larger_than_dim": ((3, 4), lambda lib, x: x.split(10)),
    "split_list": ((6, 3), lambda lib, x: x.split([1, 2, 3])),
    "split_list_dim_neg": ((2, 7), lambda lib, x: x.split([4, 3], dim=-1)),
    "split_list_with_zero": ((2, 5), lambda lib, x: x.split([2, 0, 3], 1)),
    "split_function": ((5, 3), lambda lib, x: lib.split(x, 2)),
    "split_function_list": ((3, 5), lambda lib, x: lib.split(x, [2, 3], dim=1)),
    "chunk": ((6, 2), lambda lib, x: x.chunk(3)),
    "chunk_uneven": ((7, 2), lambda lib, x: x.chunk(3)),
    "chunk_dim": ((2, 5), lambda lib, x: x.chunk(2, dim=1)),
    "chunk_dim_neg": ((2, 3, 5), lambda lib, x: x.chunk(4, -1)),
    "chunk_more_than_size": ((3, 2), lambda lib, x: x.chunk(5)),
    "chunk_function": ((6, 2), lambda lib, x: lib.chunk(x, 2, 0)),
    # edge cases
    "repeat_zero": ((2, 3), lambda lib, x: x.repeat(0, 2)),
    "squeeze_tuple": ((1, 3, 1), lambda lib, x: x.squeeze((0, 2))),
    "expand_minus_one_new_lead": ((3,), lambda lib, x: x.expand(2, -1)),
    "split_sizes_tuple": ((5, 2), lambda lib, x: x.split((2, 3))),
    "unsqueeze_scalar_neg": ((), lambda lib, x: x.unsqueeze(-1)),
    "transpose_1d": ((3,), lambda lib, x: x.transpose(0, -1)),
    "permute_scalar": ((), lambda lib, x: x.permute(())),
    "reshape_with_zero_size": ((0, 3), lambda lib, x: x.reshape(3, -1, 2)),
    # compositions, so that gradients pass through several shape ops
    "compose_view_permute": ((2, 3, 4), lambda lib, x: x.permute(1, 0, 2).reshape(3, 8).t() * 2),
    "compose_expand_sum": ((3, 1), lambda lib, x: (x.expand(3, 4) * x.t().expand(4, 3).t()).sum(1)),
    "compose_split_product": ((6, 3), lambda lib, x: x.split(2)[0] * x.split(2)[2]),
    "compose_unsqueeze_broadcast": ((3,), lambda lib, x: x.unsqueeze(0) * x.unsqueeze(1)),
}


def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _single_output(f):
    """For finite differences: fold a tuple of outputs into one scalar, weighting each piece differently."""

    def fn(*xs):
        out = f(distrain, *xs)
        if isinstance(out, (tuple, list)):
            total = None
            for i, piece in enumerate(out):
                term = (piece * (i + 1.5)).sum()
                total = term if total is None else total + term
            return total
        return out

    return fn


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(SINGLE_INPUT))
def test_shape_op_matches_torch(name, dtype, device):
    shape, f = SINGLE_INPUT[name]
    check_op_against_torch(*pair(f), [_data(shape)], dtype, device)


@pytest.mark.parametrize("name", list(SINGLE_INPUT))
def test_shape_op_finite_differences(name, device):
    shape, f = SINGLE_INPUT[name]
    check_finite_differences(_single_output(f), [_data(shape, seed=1)], device)


@pytest.mark.parametrize("name", ["reshape", "reshape_infer", "flatten_start_end", "permute", "transpose", "T",
                                  "squeeze_all", "unsqueeze_middle", "expand_new_dims", "repeat_new_dims", "split_list",
                                  "chunk_uneven"])
def test_shape_op_on_non_contiguous_input(name, device):
    shape, f = SINGLE_INPUT[name]
    # build the same shape as a non-contiguous view: a reversed permutation of a transposed, strided array
    ndim = len(shape)
    base_shape = tuple(reversed(shape))
    base_shape = (base_shape[0] * 2,) + base_shape[1:]

    def make_view(t):
        v = t[::2]
        return v.permute(*reversed(range(ndim)))

    check_op_against_torch(*pair(f), [_data(base_shape)], np.float64, device, transforms=[make_view])


@pytest.mark.parametrize("name", ["split_int", "split_list", "chunk_uneven"])
def test_only_some_split_outputs_used(name, device):
    shape, f = SINGLE_INPUT[name]
    # gradients of unused pieces are zero
    check_op_against_torch(*pair(lambda lib, x: f(lib, x)[1] * 3), [_data(shape)], np.float64, device)
    check_op_against_torch(*pair(lambda lib, x: f(lib, x)[-1].sum()), [_data(shape)], np.float64, device)


# --- cat / stack -----------------------------------------------------------------------------

CAT_CASES = {
    "cat_dim0": ([(2, 3), (4, 3)], lambda lib, *xs: lib.cat(xs)),
    "cat_dim0_kw": ([(2, 3), (1, 3), (3, 3)], lambda lib, *xs: lib.cat(list(xs), dim=0)),
    "cat_dim1": ([(2, 3), (2, 1), (2, 4)], lambda lib, *xs: lib.cat(xs, 1)),
    "cat_dim_neg": ([(2, 3, 1), (2, 3, 2)], lambda lib, *xs: lib.cat(xs, dim=-1)),
    "cat_single": ([(2, 3)], lambda lib, *xs: lib.cat(xs, 0)),
    "cat_same_tensor_twice": ([(2, 3)], lambda lib, x: lib.cat([x, x * 2, x], 1)),
    "stack_dim0": ([(2, 3), (2, 3), (2, 3)], lambda lib, *xs: lib.stack(xs)),
    "stack_dim1": ([(2, 3), (2, 3)], lambda lib, *xs: lib.stack(list(xs), dim=1)),
    "stack_dim_last": ([(2, 3), (2, 3)], lambda lib, *xs: lib.stack(xs, 2)),
    "stack_dim_neg": ([(2, 3), (2, 3)], lambda lib, *xs: lib.stack(xs, dim=-1)),
    "stack_scalars": ([(), (), ()], lambda lib, *xs: lib.stack(xs)),
    "stack_1d": ([(4,), (4,)], lambda lib, *xs: lib.stack(xs, -2)),
    "stack_dim_neg_first": ([(2, 3), (2, 3)], lambda lib, *xs: lib.stack(xs, -3)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(CAT_CASES))
def test_cat_stack_match_torch(name, dtype, device):
    shapes, f = CAT_CASES[name]
    arrays = [_data(s, seed=i) for i, s in enumerate(shapes)]
    check_op_against_torch(*pair(f), arrays, dtype, device)


@pytest.mark.parametrize("name", list(CAT_CASES))
def test_cat_stack_finite_differences(name, device):
    shapes, f = CAT_CASES[name]
    arrays = [_data(s, seed=i) for i, s in enumerate(shapes)]
    check_finite_differences(_single_output(f), arrays, device)


def test_cat_with_inputs_that_do_not_need_grad(device):
    shapes, f = CAT_CASES["cat_dim1"]
    arrays = [_data(s, seed=i) for i, s in enumerate(shapes)]
    check_op_against_torch(*pair(f), arrays, np.float64, device, requires_grad=[False, True, False])
    check_op_against_torch(*pair(f), arrays, np.float32, device, requires_grad=[True, False, True])


def test_cat_of_non_contiguous_views(device):
    f = lambda lib, a, b: lib.cat([a, b], dim=0)  # noqa: E731
    check_op_against_torch(*pair(f), [_data((3, 2)), _data((6, 3), seed=1)], np.float64, device,
                           transforms=[lambda t: t.t(), lambda t: t[::3]])


def test_split_cat_roundtrip_property(device):
    @HYPOTHESIS
    @given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), data=st.data(),
           seed=st.integers(0, 2**16))
    def run(shape, data, seed):
        dim = data.draw(st.integers(-len(shape), len(shape) - 1))
        size = data.draw(st.integers(1, 6))
        f = lambda lib, x: lib.cat([p * (i + 1) for i, p in enumerate(x.split(size, dim))], dim)  # noqa: E731
        g = lambda lib, x: lib.stack(x.chunk(size, dim), 0).sum(0) if shape[dim] % size == 0 else x.chunk(size, dim)  # noqa: E731
        check_op_against_torch(*pair(f), [_data(shape, seed)], np.float64, device, seed=seed)
        check_op_against_torch(*pair(g), [_data(shape, seed)], np.float64, device, seed=seed)

    run()


# --- shape errors ----------------------------------------------------------------------------


def test_cat_mismatch_raises_shape_error(device):
    a = to_distrain(np.ones((2, 3)), device, requires_grad=True)
    b = to_distrain(np.ones((4, 5)), device, requires_grad=True)
    err = assert_shape_error(lambda: distrain.cat([a, b], dim=0), (2, 3), (4, 5))
    assert isinstance(err, ValueError)
    c = to_distrain(np.ones((2, 3, 4)), device)
    d = to_distrain(np.ones((2, 5, 5)), device)
    assert_shape_error(lambda: distrain.cat([c, d], dim=1), (2, 3, 4), (2, 5, 5))


def test_cat_rank_mismatch_raises_shape_error(device):
    a = to_distrain(np.ones((2, 3)), device)
    b = to_distrain(np.ones((2, 3, 1)), device)
    assert_shape_error(lambda: distrain.cat([a, b], dim=0), (2, 3), (2, 3, 1))


def test_stack_mismatch_raises_shape_error(device):
    a = to_distrain(np.ones((2, 3)), device)
    b = to_distrain(np.ones((4, 5)), device)
    assert_shape_error(lambda: distrain.stack([a, b]), (2, 3), (4, 5))


@pytest.mark.parametrize(
    "op, target",
    [
        (lambda x: x.reshape(4, 5), (4, 5)),
        (lambda x: x.reshape((4, 5)), (4, 5)),
        (lambda x: distrain.reshape(x, (4, 5)), (4, 5)),
        (lambda x: x.view(4, 5), (4, 5)),
    ],
    ids=["reshape", "reshape_tuple", "reshape_function", "view"],
)
def test_reshape_to_incompatible_size_raises_shape_error(op, target, device):
    x = to_distrain(np.ones((2, 3)), device, requires_grad=True)
    err = assert_shape_error(lambda: op(x), (2, 3), target)
    assert isinstance(err, ValueError)


def test_reshape_with_inferred_dim_that_does_not_divide_raises_shape_error(device):
    x = to_distrain(np.ones((2, 3)), device)
    with pytest.raises(distrain.ShapeError) as info:
        x.reshape(4, -1)
    assert "(2, 3)" in str(info.value)


def test_expand_of_non_singleton_dim_raises(device):
    x = to_distrain(np.ones((2, 3)), device)
    with pytest.raises(distrain.ShapeError) as info:
        x.expand(4, 3)
    assert "(2, 3)" in str(info.value)


@pytest.mark.parametrize("dim", [0, 1])
def test_cat_with_an_empty_tensor(dim, device):
    shapes = [(0, 3), (2, 3)] if dim == 0 else [(2, 0), (2, 3)]
    check_op_against_torch(*pair(lambda lib, a, b: lib.cat([a, b, a], dim)), [_data(s) for s in shapes], np.float64, device)


@pytest.mark.parametrize("op", ["cat", "stack"])
def test_cat_stack_of_mixed_float_dtypes(op, device):
    # torch promotes to float64; each leaf still gets a gradient of its own dtype
    a, b = _data((2, 3)).astype(np.float32), _data((2, 3), seed=1)
    da, db = to_distrain(a, device, requires_grad=True), to_distrain(b, device, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    d_out, t_out = getattr(distrain, op)([da, db], 1), getattr(torch, op)([ta, tb], 1)
    assert d_out.dtype == distrain.float64 and t_out.dtype == torch.float64
    np.testing.assert_allclose(d_out.detach().cpu().numpy(), t_out.detach().numpy(), rtol=1e-7)
    g = _data(tuple(t_out.shape), seed=2)
    d_out.backward(to_distrain(g, device))
    t_out.backward(torch.tensor(g))
    for d, t in ((da, ta), (db, tb)):
        assert np.dtype(d.grad.dtype) == t.grad.numpy().dtype
        np.testing.assert_allclose(d.grad.cpu().numpy(), t.grad.numpy(), rtol=1e-6)
