"""matmul / mm / bmm against PyTorch and finite differences, including every matmul rank
combination, batch broadcasting, non-contiguous operands, and shape errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import distrain

from .oracle import (
    FLOAT_DTYPES,
    HYPOTHESIS,
    assert_shape_error,
    check_finite_differences,
    check_op_against_torch,
    check_second_order_against_torch,
    pair,
    to_distrain,
)

MATMUL_SHAPES = [
    ((4,), (4,)),  # dot -> scalar
    ((3, 4), (4,)),  # matrix-vector
    ((4,), (4, 2)),  # vector-matrix
    ((3, 4), (4, 2)),
    ((1, 1), (1, 1)),
    ((2, 3, 4), (2, 4, 5)),  # batched
    ((2, 3, 4), (4, 5)),  # batch x matrix
    ((4, 5), (2, 5, 3)),  # matrix x batch
    ((2, 1, 3, 4), (5, 4, 2)),  # batch broadcasting
    ((1, 3, 4), (2, 1, 4, 2)),
    ((2, 3, 4), (4,)),  # batched matrix-vector
    ((4,), (2, 4, 3)),  # vector-batched matrix
    ((3, 2, 3, 4), (1, 4, 2)),
]

MATMUL_FORMS = {
    "operator": lambda lib, a, b: a @ b,
    "function": lambda lib, a, b: lib.matmul(a, b),
    "method": lambda lib, a, b: a.matmul(b),
}

# matmul sums over the inner dimension: scale float32 tolerances accordingly
def _tols(dtype):
    return (1e-5, 1e-5) if np.dtype(dtype) == np.float32 else (1e-9, 1e-11)


def _inputs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("form", list(MATMUL_FORMS))
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_matches_torch(shapes, form, dtype, device):
    rtol, atol = _tols(dtype)
    check_op_against_torch(*pair(MATMUL_FORMS[form]), _inputs(shapes), dtype, device, rtol=rtol, atol=atol)


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_finite_differences(shapes, device):
    check_finite_differences(lambda a, b: a @ b, _inputs(shapes, seed=1), device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((1, 5), (5, 1)), ((6, 1), (1, 3))], ids=str)
def test_mm_matches_torch(shapes, dtype, device):
    rtol, atol = _tols(dtype)
    for f in (lambda lib, a, b: lib.mm(a, b), lambda lib, a, b: a.mm(b)):
        check_op_against_torch(*pair(f), _inputs(shapes), dtype, device, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (1, 4, 1)), ((3, 1, 2), (3, 2, 2))], ids=str)
def test_bmm_matches_torch(shapes, dtype, device):
    rtol, atol = _tols(dtype)
    for f in (lambda lib, a, b: lib.bmm(a, b), lambda lib, a, b: a.bmm(b)):
        check_op_against_torch(*pair(f), _inputs(shapes), dtype, device, rtol=rtol, atol=atol)


def test_mm_bmm_finite_differences(device):
    check_finite_differences(lambda a, b: distrain.mm(a, b), _inputs(((3, 4), (4, 2)), seed=2), device)
    check_finite_differences(lambda a, b: distrain.bmm(a, b), _inputs(((2, 3, 4), (2, 4, 5)), seed=3), device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matmul_non_contiguous_operands(dtype, device):
    rtol, atol = _tols(dtype)
    f = MATMUL_FORMS["operator"]
    a, b = _inputs(((4, 3), (2, 4)))
    check_op_against_torch(*pair(f), [a, b], dtype, device, rtol=rtol, atol=atol,
                           transforms=[lambda t: t.t(), lambda t: t.transpose(0, 1)])  # (3,4) @ (4,2)
    a, b = _inputs(((6, 8), (2, 5, 4)), seed=1)
    check_op_against_torch(*pair(f), [a, b], dtype, device, rtol=rtol, atol=atol,
                           transforms=[lambda t: t[::2, ::2], lambda t: t.permute(0, 2, 1)])  # (3,4) @ (2,4,5)
    a, b = _inputs(((3, 4, 2), (4, 3, 5)), seed=2)
    check_op_against_torch(*pair(lambda lib, x, y: lib.bmm(x, y)), [a, b], dtype, device, rtol=rtol, atol=atol,
                           transforms=[lambda t: t.permute(0, 2, 1), lambda t: t.transpose(0, 1)])  # (3,2,4) @ (3,4,5)


def test_matmul_property_random_batch_broadcasting(device):
    @HYPOTHESIS
    @given(
        n=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4),
        batch=st.lists(st.integers(1, 3), min_size=0, max_size=3),
        data=st.data(), seed=st.integers(0, 2**16),
    )
    def run(n, k, m, batch, data, seed):
        # each operand gets a suffix of the batch shape with some sizes replaced by 1, or is 1-D
        def operand_batch():
            keep = data.draw(st.integers(0, len(batch)))
            return [1 if data.draw(st.booleans()) else b for b in batch[len(batch) - keep:]]

        a_vec, b_vec = data.draw(st.booleans()), data.draw(st.booleans())
        a_shape = (k,) if a_vec else tuple(operand_batch()) + (n, k)
        b_shape = (k,) if b_vec else tuple(operand_batch()) + (k, m)
        for dtype in FLOAT_DTYPES:
            rtol, atol = _tols(dtype)
            check_op_against_torch(*pair(MATMUL_FORMS["operator"]), _inputs((a_shape, b_shape), seed), dtype, device,
                                   rtol=rtol, atol=atol, seed=seed)

    run()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matmul_with_one_operand_constant(dtype, device):
    rtol, atol = _tols(dtype)
    a, b = _inputs(((2, 3, 4), (4, 5)))
    check_op_against_torch(*pair(MATMUL_FORMS["operator"]), [a, b], dtype, device, rtol=rtol, atol=atol,
                           requires_grad=[False, True])
    check_op_against_torch(*pair(MATMUL_FORMS["operator"]), [a, b], dtype, device, rtol=rtol, atol=atol,
                           requires_grad=[True, False])


# --- shape errors ----------------------------------------------------------------------------

SHAPE_ERRORS = [
    ("matmul", lambda a, b: a @ b, (2, 3), (4, 5)),
    ("matmul_function", lambda a, b: distrain.matmul(a, b), (2, 3), (4, 5)),
    ("matmul_vector", lambda a, b: a @ b, (2, 3), (4,)),
    ("matmul_dot", lambda a, b: a @ b, (3,), (4,)),
    ("matmul_batched", lambda a, b: a @ b, (7, 2, 3), (7, 4, 5)),
    ("matmul_batch_mismatch", lambda a, b: a @ b, (2, 3, 4), (3, 4, 5)),
    ("mm", lambda a, b: distrain.mm(a, b), (2, 3), (4, 5)),
    ("mm_method", lambda a, b: a.mm(b), (2, 3), (4, 5)),
    ("bmm", lambda a, b: distrain.bmm(a, b), (2, 2, 3), (2, 4, 5)),
    ("bmm_batch_mismatch", lambda a, b: distrain.bmm(a, b), (2, 3, 4), (3, 4, 5)),
]


@pytest.mark.parametrize("name, op, shape_a, shape_b", SHAPE_ERRORS, ids=[c[0] for c in SHAPE_ERRORS])
def test_matmul_shape_mismatch_raises_shape_error(name, op, shape_a, shape_b, device):
    a = to_distrain(np.ones(shape_a), device, requires_grad=True)
    b = to_distrain(np.ones(shape_b), device, requires_grad=True)
    err = assert_shape_error(lambda: op(a, b), shape_a, shape_b)
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (4,))], ids=str)
def test_matmul_second_derivative_matches_torch(shapes, device):
    check_second_order_against_torch(*pair(lambda lib, a, b: (a @ b) ** 2), _inputs(shapes, seed=4), np.float64, device)
    check_second_order_against_torch(*pair(lambda lib, a, b: a @ b), _inputs(shapes, seed=5), np.float64, device)
