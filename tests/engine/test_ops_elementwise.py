"""Elementwise ops against PyTorch and finite differences: unary, binary (with broadcasting),
reflected operators, clamp, where, and non-contiguous inputs."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import distrain

from .oracle import (
    FLOAT_DTYPES,
    HYPOTHESIS,
    assert_shape_error,
    check_finite_differences,
    check_op_against_torch,
    check_second_order_against_torch,
    pair,
    random_array,
    to_distrain,
)

# name -> (f(lib, x), input domain). Every form (operator, function, method) is listed.
UNARY = {
    "neg_operator": (lambda lib, x: -x, "any"),
    "neg_function": (lambda lib, x: lib.neg(x), "any"),
    "neg_method": (lambda lib, x: x.neg(), "any"),
    "exp": (lambda lib, x: lib.exp(x), "any"),
    "exp_method": (lambda lib, x: x.exp(), "any"),
    "log": (lambda lib, x: lib.log(x), "positive"),
    "log_method": (lambda lib, x: x.log(), "positive"),
    "sqrt": (lambda lib, x: lib.sqrt(x), "positive"),
    "sqrt_method": (lambda lib, x: x.sqrt(), "positive"),
    "abs": (lambda lib, x: lib.abs(x), "nonzero"),
    "abs_method": (lambda lib, x: x.abs(), "nonzero"),
    "sin": (lambda lib, x: lib.sin(x), "any"),
    "sin_method": (lambda lib, x: x.sin(), "any"),
    "cos": (lambda lib, x: lib.cos(x), "any"),
    "cos_method": (lambda lib, x: x.cos(), "any"),
    # tensor ** scalar
    "pow_2": (lambda lib, x: x**2, "any"),
    "pow_3": (lambda lib, x: x**3, "any"),
    "pow_int_1": (lambda lib, x: x**1, "any"),
    "pow_0": (lambda lib, x: x**0, "any"),
    "pow_half": (lambda lib, x: x**0.5, "positive"),
    "pow_neg_1p5": (lambda lib, x: x**-1.5, "positive"),
    "pow_neg_2": (lambda lib, x: x**-2, "nonzero"),
    "pow_function": (lambda lib, x: lib.pow(x, 3.0), "any"),
    "pow_method": (lambda lib, x: x.pow(2.5), "positive"),
    # scalar ** tensor and other reflected operators
    "rpow_2": (lambda lib, x: 2**x, "any"),
    "rpow_float": (lambda lib, x: 0.5**x, "any"),
    "rpow_function": (lambda lib, x: lib.pow(3.0, x), "any"),
    "rsub": (lambda lib, x: 2 - x, "any"),
    "rdiv": (lambda lib, x: 2 / x, "nonzero"),
    "radd": (lambda lib, x: 2.5 + x, "any"),
    "rmul": (lambda lib, x: 2.5 * x, "any"),
    # tensor op scalar
    "add_scalar": (lambda lib, x: x + 1.5, "any"),
    "sub_scalar": (lambda lib, x: x - 1.5, "any"),
    "mul_scalar": (lambda lib, x: x * -3.0, "any"),
    "div_scalar": (lambda lib, x: x / 4.0, "any"),
    "add_int_scalar": (lambda lib, x: x + 2, "any"),
    "mul_int_scalar": (lambda lib, x: x * 3, "any"),
    # clamp: min only, max only, both (data is continuous, so never exactly on a bound)
    "clamp_min": (lambda lib, x: lib.clamp(x, min=-0.3), "any"),
    "clamp_max": (lambda lib, x: lib.clamp(x, max=0.4), "any"),
    "clamp_both": (lambda lib, x: lib.clamp(x, -0.3, 0.4), "any"),
    "clamp_method_min": (lambda lib, x: x.clamp(min=-0.3), "any"),
    "clamp_method_max": (lambda lib, x: x.clamp(max=0.4), "any"),
    "clamp_method_both": (lambda lib, x: x.clamp(-0.3, 0.4), "any"),
    "clamp_method_kw_both": (lambda lib, x: x.clamp(min=-1.0, max=0.1), "any"),
    "clamp_min_above_max": (lambda lib, x: x.clamp(0.5, -0.5), "any"),  # torch: every element becomes max
    # a chain, so intermediate gradients flow through several ops
    "chain": (lambda lib, x: lib.exp(lib.sin(x) * 2 - x**2) / (1 + x.abs()), "nonzero"),
}

# name -> (f(lib, a, b), domain of a, domain of b)
BINARY = {
    "add": (lambda lib, a, b: a + b, "any", "any"),
    "add_function": (lambda lib, a, b: lib.add(a, b), "any", "any"),
    "sub": (lambda lib, a, b: a - b, "any", "any"),
    "sub_function": (lambda lib, a, b: lib.sub(a, b), "any", "any"),
    "mul": (lambda lib, a, b: a * b, "any", "any"),
    "mul_function": (lambda lib, a, b: lib.mul(a, b), "any", "any"),
    "div": (lambda lib, a, b: a / b, "any", "nonzero"),
    "div_function": (lambda lib, a, b: lib.div(a, b), "any", "nonzero"),
    "pow_tensor_tensor": (lambda lib, a, b: a**b, "positive", "any"),
    "pow_function": (lambda lib, a, b: lib.pow(a, b), "positive", "any"),
    "maximum": (lambda lib, a, b: lib.maximum(a, b), "any", "any"),
    "minimum": (lambda lib, a, b: lib.minimum(a, b), "any", "any"),
    "max_binary_function": (lambda lib, a, b: lib.max(a, b), "any", "any"),
    "min_binary_method": (lambda lib, a, b: a.min(b), "any", "any"),
    "same_input_twice": (lambda lib, a, b: a * a + b * a, "any", "any"),
}

UNARY_SHAPES = [(), (5,), (3, 4), (2, 3, 4)]


def _unary_input(name, shape, seed=0):
    _, domain = UNARY[name]
    return random_array(np.random.default_rng(seed), shape, domain)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_matches_torch(name, shape, dtype, device):
    f, _ = UNARY[name]
    check_op_against_torch(*pair(f), [_unary_input(name, shape)], dtype, device)


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_finite_differences(name, device):
    f, _ = UNARY[name]
    check_finite_differences(lambda x: f(distrain, x), [_unary_input(name, (2, 3), seed=1)], device)


# non-contiguous views, built the same way in distrain and torch
VIEWS = {
    "transpose": ((4, 3), lambda t: t.transpose(0, 1)),
    "t": ((4, 3), lambda t: t.t()),
    "strided_rows": ((6, 4), lambda t: t[::2]),
    "strided_both": ((7, 9), lambda t: t[1::2, ::3]),
    "permuted_3d": ((2, 3, 4), lambda t: t.permute(2, 0, 1)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("name", ["exp", "log", "abs", "pow_3", "rdiv", "clamp_both", "chain"])
def test_unary_on_non_contiguous_views(name, view, dtype, device):
    f, _ = UNARY[name]
    shape, tf = VIEWS[view]
    check_op_against_torch(*pair(f), [_unary_input(name, shape)], dtype, device, transforms=[tf])


def _binary_inputs(name, shape_a, shape_b, seed=0):
    _, dom_a, dom_b = BINARY[name]
    rng = np.random.default_rng(seed)
    return [random_array(rng, shape_a, dom_a), random_array(rng, shape_b, dom_b)]


BINARY_SHAPE_PAIRS = [
    ((3, 4), (3, 4)),
    ((), (3, 4)),
    ((3, 4), ()),
    ((3, 4), (4,)),
    ((3, 1), (1, 4)),
    ((2, 1, 4), (3, 1)),
    ((5,), (2, 3, 1)),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shapes", BINARY_SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_matches_torch(name, shapes, dtype, device):
    f, _, _ = BINARY[name]
    check_op_against_torch(*pair(f), _binary_inputs(name, *shapes), dtype, device)


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_broadcasting_property(name, device):
    f, _, _ = BINARY[name]

    @HYPOTHESIS
    @given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4),
           seed=st.integers(0, 2**16))
    def run(shapes, seed):
        inputs = _binary_inputs(name, *shapes.input_shapes, seed=seed)
        for dtype in FLOAT_DTYPES:
            check_op_against_torch(*pair(f), inputs, dtype, device, seed=seed)

    run()


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 1, 3), (4, 1)), ((), (2, 3))], ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_finite_differences(name, shapes, device):
    f, _, _ = BINARY[name]
    check_finite_differences(lambda a, b: f(distrain, a, b), _binary_inputs(name, *shapes, seed=3), device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow_tensor_tensor", "maximum", "minimum"])
def test_binary_non_contiguous_views(name, dtype, device):
    f, _, _ = BINARY[name]
    a, b = _binary_inputs(name, (4, 3), (6, 4))
    check_op_against_torch(
        *pair(f), [a, b], dtype, device, transforms=[lambda t: t.transpose(0, 1), lambda t: t[::2, :]]
    )
    # a strided view broadcast against a transposed one
    a, b = _binary_inputs(name, (8, 3), (3, 1), seed=1)
    check_op_against_torch(*pair(f), [a, b], dtype, device, transforms=[lambda t: t[::2].t(), None])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_binary_one_side_without_grad(dtype, device):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 4)), random_array(rng, (4,), "nonzero")
    for f in (lambda lib, a, b: a / b, lambda lib, a, b: a * b, lambda lib, a, b: lib.maximum(a, b)):
        check_op_against_torch(*pair(f), [a, b], dtype, device, requires_grad=[True, False])
        check_op_against_torch(*pair(f), [a, b], dtype, device, requires_grad=[False, True])


# --- where ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "shapes", [((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), (4,)), ((4,), (3, 4), ()), ((2, 3, 1), (3, 4), (1,))], ids=str
)
def test_where_matches_torch(shapes, dtype, device):
    rng = np.random.default_rng(7)
    cond = rng.random(shapes[0]) > 0.5
    x, y = rng.standard_normal(shapes[1]), rng.standard_normal(shapes[2])
    check_op_against_torch(*pair(lambda lib, c, a, b: lib.where(c, a, b)), [cond, x, y], dtype, device)


def test_where_broadcasting_property(device):
    @HYPOTHESIS
    @given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=1, max_side=4),
           seed=st.integers(0, 2**16))
    def run(shapes, seed):
        rng = np.random.default_rng(seed)
        cs, xs, ys = shapes.input_shapes
        cond, x, y = rng.random(cs) > 0.5, rng.standard_normal(xs), rng.standard_normal(ys)
        for dtype in FLOAT_DTYPES:
            check_op_against_torch(*pair(lambda lib, c, a, b: lib.where(c, a, b)), [cond, x, y], dtype, device, seed=seed)

    run()


def test_where_finite_differences(device):
    rng = np.random.default_rng(8)
    cond = distrain.tensor(rng.random((3, 4)) > 0.5, device=device)
    check_finite_differences(
        lambda a, b: distrain.where(cond, a, b), [rng.standard_normal((3, 1)), rng.standard_normal((3, 4))], device
    )


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_where_with_comparison_condition(dtype, device):
    # the condition comes from a comparison of the differentiable input itself (as in a ReLU by hand)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 5))
    check_op_against_torch(*pair(lambda lib, a: lib.where(a > 0, a * 2, a**2)), [x], dtype, device)


# --- maximum / minimum and comparisons --------------------------------------------------------


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons_give_bool_tensors_without_grad(op, device):
    rng = np.random.default_rng(10)
    a = np.round(rng.standard_normal((3, 4)), 1)
    b = a.copy()
    b[0] += 1.0
    b[1] -= 1.0
    fns = {
        "eq": lambda x, y: x == y,
        "ne": lambda x, y: x != y,
        "lt": lambda x, y: x < y,
        "le": lambda x, y: x <= y,
        "gt": lambda x, y: x > y,
        "ge": lambda x, y: x >= y,
    }
    f = fns[op]
    check_op_against_torch(f, f, [a, b], np.float64, device, grad=False)
    check_op_against_torch(f, f, [a, b[0]], np.float32, device, grad=False)


# --- shape errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b, lambda a, b: distrain.add(a, b),
     lambda a, b: distrain.maximum(a, b)],
    ids=["add", "sub", "mul", "div", "add_function", "maximum"],
)
def test_broadcasting_mismatch_raises_shape_error(op, device):
    a = to_distrain(np.ones((2, 3)), device)
    b = to_distrain(np.ones((4, 5)), device)
    err = assert_shape_error(lambda: op(a, b), (2, 3), (4, 5))
    assert isinstance(err, ValueError)
    # trailing-dimension mismatch with a broadcastable leading dim
    c = to_distrain(np.ones((3, 1, 4)), device)
    d = to_distrain(np.ones((2, 5)), device)
    assert_shape_error(lambda: op(c, d), (3, 1, 4), (2, 5))


def test_where_shape_mismatch_raises_shape_error(device):
    cond = distrain.tensor(np.ones((2, 3), dtype=bool), device=device)
    a = to_distrain(np.ones((2, 3)), device)
    b = to_distrain(np.ones((4, 5)), device)
    with pytest.raises(distrain.ShapeError):
        distrain.where(cond, a, b)


# --- dtype of results ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_python_scalars_keep_the_tensor_dtype(dtype, device):
    x = np.array([0.5, 1.5, 2.5])
    for f in (lambda lib, t: t * 2.5, lambda lib, t: 2 - t, lambda lib, t: t**2, lambda lib, t: 2**t, lambda lib, t: t / 3,
              lambda lib, t: t + 1):
        check_op_against_torch(*pair(f), [x], dtype, device)


# --- pow at zero ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("exponent", [0, 1, 2, 3, 2.0, 4])
def test_pow_scalar_exponent_at_zero_base(exponent, dtype, device):
    # x ** n is smooth at 0 for these n; torch's gradient there is n * 0 ** (n - 1), i.e. 0 for x ** 0
    x = np.array([0.0, -1.5, 0.0, 2.0, 0.7])
    check_op_against_torch(*pair(lambda lib, t: t**exponent), [x], dtype, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_pow_tensor_exponent_at_zero_base(dtype, device):
    # d(0 ** e)/de is taken as 0 for e > 0 (torch's convention), and the base gradient is finite for e >= 1
    base = np.array([0.0, 0.5, 2.0, 0.0])
    exponent = np.array([2.0, 1.5, -0.5, 3.0])
    check_op_against_torch(*pair(lambda lib, a, b: a**b), [base, exponent], dtype, device)


# --- dtype promotion --------------------------------------------------------------------------

# name -> (dtype of a, shape of a, dtype of b or None for a Python scalar, shape of b, f(a, b))
PROMOTION_CASES = {
    "float32_plus_float64": (np.float32, (3, 4), np.float64, (4,), lambda a, b: a + b),
    "float64_times_float32": (np.float64, (3, 4), np.float32, (4,), lambda a, b: a * b),
    "int64_plus_float32": (np.int64, (3, 4), np.float32, (4,), lambda a, b: a + b),
    "float32_div_int64": (np.float32, (3, 4), np.int64, (4,), lambda a, b: a / b),
    "int64_div_int64": (np.int64, (3, 4), np.int64, (4,), lambda a, b: a / b),
    "int64_times_int64": (np.int64, (3, 4), np.int64, (4,), lambda a, b: a * b),
    "int64_minus_int64": (np.int64, (3, 4), np.int64, (4,), lambda a, b: a - b),
    "int32_plus_int64": (np.int32, (3, 4), np.int64, (4,), lambda a, b: a + b),
    "int64_times_python_float": (np.int64, (3, 4), None, None, lambda a, b: a * 2.5),
    "int64_plus_python_int": (np.int64, (3, 4), None, None, lambda a, b: a + 3),
    "python_float_minus_int64": (np.int64, (3, 4), None, None, lambda a, b: 1.5 - a),
    "float32_times_python_float": (np.float32, (3, 4), None, None, lambda a, b: a * 1e-3),
    # 0-d tensors do not widen a dimensioned tensor of the same category
    "float32_times_0d_float64": (np.float32, (3, 4), np.float64, (), lambda a, b: a * b),
    "0d_float64_minus_float32": (np.float64, (), np.float32, (3, 4), lambda a, b: a - b),
    "0d_float32_plus_float64": (np.float32, (), np.float64, (3, 4), lambda a, b: a + b),
    "0d_float64_times_int64": (np.float64, (), np.int64, (3, 4), lambda a, b: a * b),
    "0d_float64_times_bool": (np.float64, (), np.bool_, (3, 4), lambda a, b: a * b),
    "int64_plus_0d_float32": (np.int64, (3, 4), np.float32, (), lambda a, b: a + b),
    "0d_float32_plus_0d_float64": (np.float32, (), np.float64, (), lambda a, b: a + b),
    "float32_div_0d_float64": (np.float32, (3, 4), np.float64, (), lambda a, b: a / b),
    "float32_pow_0d_float64": (np.float32, (3, 4), np.float64, (), lambda a, b: a**b),
    "float32_maximum_0d_float64": (np.float32, (3, 4), np.float64, (), lambda a, b: a.maximum(b)),
}


@pytest.mark.parametrize("name", list(PROMOTION_CASES))
def test_dtype_promotion_matches_torch(name, device):
    a_dtype, a_shape, b_dtype, b_shape, f = PROMOTION_CASES[name]
    rng = np.random.default_rng(11)
    leaves = []
    for dtype, shape in ((a_dtype, a_shape), (b_dtype, b_shape)):
        if dtype is None:
            continue
        value = rng.integers(1, 3 if dtype == np.bool_ else 9, size=shape).astype(dtype)
        floating = value.dtype.kind == "f"
        leaves.append((to_distrain(value, device, requires_grad=floating), torch.tensor(value, requires_grad=floating)))
    d_args = [d for d, _ in leaves] + [None] * (2 - len(leaves))
    t_args = [t for _, t in leaves] + [None] * (2 - len(leaves))
    d_out, t_out = f(*d_args), f(*t_args)
    t_dtype = t_out.numpy(force=True).dtype
    assert np.dtype(d_out.dtype) == t_dtype, f"result dtype {d_out.dtype}, torch gives {t_out.dtype}"
    rtol = 1e-6 if t_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(d_out.detach().cpu().numpy(), t_out.detach().numpy(), rtol=rtol)
    if t_out.requires_grad:
        g = rng.standard_normal(tuple(t_out.shape)).astype(t_dtype)
        d_out.backward(to_distrain(g, device))
        t_out.backward(torch.tensor(g))
        for d, t in leaves:
            if t.requires_grad:
                assert np.dtype(d.grad.dtype) == t.grad.numpy().dtype, "a leaf's grad has the leaf's dtype"
                np.testing.assert_allclose(d.grad.cpu().numpy(), t.grad.numpy(), rtol=1e-6)


# --- where with Python scalars ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("form", ["scalar_other", "scalar_input"])
def test_where_with_a_scalar_branch(form, dtype, device):
    rng = np.random.default_rng(12)
    cond, x = rng.random((3, 4)) > 0.5, rng.standard_normal((3, 4))
    if form == "scalar_other":
        f = lambda lib, c, a: lib.where(c, a, 0.0)  # noqa: E731
    else:
        f = lambda lib, c, a: lib.where(c, -1.5, a)  # noqa: E731
    check_op_against_torch(*pair(f), [cond, x], dtype, device)


# --- second derivatives (create_graph=True) ---------------------------------------------------

SECOND_ORDER_UNARY = ["neg_operator", "exp", "log", "sqrt", "abs", "sin", "cos", "pow_3", "pow_half", "pow_neg_1p5",
                      "rpow_2", "rdiv", "clamp_both", "chain"]
SECOND_ORDER_BINARY = ["add", "sub", "mul", "div", "pow_tensor_tensor", "maximum", "same_input_twice"]


@pytest.mark.parametrize("name", SECOND_ORDER_UNARY)
def test_unary_second_derivative_matches_torch(name, device):
    f, _ = UNARY[name]
    check_second_order_against_torch(*pair(f), [_unary_input(name, (3, 4), seed=2)], np.float64, device)


@pytest.mark.parametrize("name", SECOND_ORDER_BINARY)
def test_binary_second_derivative_matches_torch(name, device):
    f, _, _ = BINARY[name]
    check_second_order_against_torch(*pair(f), _binary_inputs(name, (3, 1), (4,), seed=2), np.float64, device)


# --- PyTorch's conventions at kinks and ties (not differentiable points: compared with torch only)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "name, f",
    [
        ("abs_at_zero", lambda lib, x: x.abs()),
        ("clamp_at_bounds", lambda lib, x: x.clamp(-1.0, 1.0)),
        ("clamp_min_at_bound", lambda lib, x: x.clamp(min=0.0)),
        ("clamp_max_at_bound", lambda lib, x: x.clamp(max=1.0)),
        ("maximum_ties", lambda lib, x: lib.maximum(x, x.detach() * 0 + 1.0)),
        ("minimum_ties", lambda lib, x: lib.minimum(x, x.detach() * 0 - 1.0)),
        ("maximum_self", lambda lib, x: lib.maximum(x, x)),
        ("relu_at_zero", lambda lib, x: lib.relu(x)),
        ("leaky_relu_at_zero", lambda lib, x: lib.nn.functional.leaky_relu(x, 0.1)),
    ],
)
def test_torch_conventions_at_kinks(name, f, dtype, device):
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    check_op_against_torch(*pair(f), [x], dtype, device)


# --- float16 (half): results and gradients stay half, values match torch to half precision ----


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "pow_3", "rdiv", "clamp_both", "mul_scalar"])
def test_unary_in_float16(name, device):
    f, _ = UNARY[name]
    check_op_against_torch(*pair(f), [_unary_input(name, (3, 4))], np.float16, device, rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["add", "mul", "div", "maximum"])
def test_binary_in_float16(name, device):
    f, _, _ = BINARY[name]
    check_op_against_torch(*pair(f), _binary_inputs(name, (3, 4), (4,)), np.float16, device, rtol=2e-3, atol=2e-3)
