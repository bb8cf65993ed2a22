"""distrain's differentiable ops, and the one place where they become Tensor methods.

Ops live in one file per kind, each forward beside its backward:

- `arithmetic.py`  add sub mul div floor_divide remainder neg pow, comparisons
- `elementwise.py` exp log log1p expm1 sqrt abs sin cos, relu leaky_relu gelu sigmoid tanh, clamp where maximum minimum
- `reduce.py`      sum mean max min var std prod logsumexp argmax argmin all any
- `linalg.py`      matmul mm bmm dot
- `shape.py`       reshape view flatten transpose permute squeeze unsqueeze expand repeat cat stack split chunk
- `indexing.py`    x[...] and x[...] = v, gather index_select one_hot
- `softmax.py`     softmax log_softmax cross_entropy
- `convert.py`     to cpu cuda float double ...
- `inplace.py`     add_ sub_ mul_ div_ clamp_ zero_ fill_ copy_
- `sorting.py`     sort argsort msort topk kthvalue unique unique_consecutive
- `scatter_gather.py` scatter scatter_add index_add index_copy index_fill masked_fill nonzero (and their `_` forms)
- `cumulative.py`  cumsum cumprod
- `einsum.py`      einsum (pairwise batched matmuls)
- `rearrange.py`   roll tril triu diag diagonal meshgrid repeat_interleave tensor_split
- `products.py`    outer addmm baddbmm
- `norms.py`       norm, linalg.vector_norm / matrix_norm / norm
- `closeness.py`   isclose allclose equal
- `numeric.py`     lerp nan_to_num
- `math_functions.py` floor ceil round trunc frac reciprocal rsqrt log2 log10 exp2 tan asin ... atan2 addcmul addcdiv
- `views_and_stacks.py` movedim swapaxes unflatten select broadcast_to broadcast_tensors hstack vstack dstack column_stack
- `selection.py`   masked_select take take_along_dim diff
- `nan_reductions.py` nansum nanmean count_nonzero median nanmedian var_mean std_mean
- `contractions.py` mv inner vdot tensordot trace kron cross cdist
- `bucketing.py`   searchsorted bucketize bincount histc tril_indices triu_indices
- `sampling.py`    multinomial bernoulli normal, and the fills normal_ uniform_ bernoulli_ exponential_ random_
"""
from __future__ import annotations

from ..backend import array_module
from .. import legacy_types
from ..tensor import Tensor
from .core import sum_to_shape, wrap
from ..sizes import integers
from .arithmetic import (add, div, eq, eq_operator, floor_divide, ge, gt, le, logical_and, logical_or, logical_xor,
                         lt, mul, ne, ne_operator, neg, pow, rdiv, remainder, rpow, rsub, sub)
from .convert import bool_, cpu, cuda, double, float_, half, int_, long, to, type_as
from .elementwise import abs, clamp, cos, erf, exp, expm1, gelu, leaky_relu, log, log1p, maximum, minimum, relu, sigmoid, sign, sin, sqrt, tanh, where
from .indexing import gather, getitem, index_select, one_hot
from .inplace import add_, clamp_, copy_, div_, fill_, mul_, pow_, relu_, setitem, sub_, zero_
from .linalg import bmm, dot, matmul, mm
from .reduce import all, amax, amin, any, argmax, argmin, logsumexp, max, mean, min, prod, std, sum, var
from .shape import (cat, chunk, clone, contiguous, expand, expand_as, flatten, flip, narrow, pad, permute, repeat, reshape,
                    reverse_dims, split, squeeze, stack, t, transpose, unbind, unsqueeze, view)
from .softmax import cross_entropy, log_softmax, softmax
from .closeness import allclose, equal, isclose
from .cumulative import cummax, cummin, cumprod, cumsum, logcumsumexp
from .einsum import einsum
from .inplace import in_place_form
from .norms import tensor_norm as norm
from .numeric import lerp, nan_to_num
from .products import addmm, baddbmm, outer
from .rearrange import diag, diagonal, meshgrid, repeat_interleave, roll, rot90, tensor_split, tril, triu
from .scatter_gather import (argwhere, fill_diagonal, index_add, index_copy, index_fill, index_put, masked_fill,
                             masked_scatter, nonzero, scatter, scatter_add, scatter_reduce)
from .sorting import argsort, kthvalue, msort, sort, topk, unique, unique_consecutive
from .bucketing import bincount, bucketize, histc, searchsorted, tril_indices, triu_indices
from .contractions import cdist, cross, inner, kron, mv, tensordot, trace, vdot
from .math_functions import (acos, acosh, addcdiv, addcmul, asin, asinh, atan, atan2, atanh, ceil, clamp_max, clamp_min,
                             cosh, deg2rad, exp2, floor, frac, hypot, log2, log10, logaddexp, logit, rad2deg, reciprocal,
                             round, rsqrt, sinh, tan, trunc, xlogy)
from .norms import dist
from .nan_reductions import count_nonzero, median, nanmean, nanmedian, nansum, std_mean, var_mean
from .selection import diff, masked_select, take, take_along_dim
from .sampling import bernoulli, bernoulli_, exponential_, multinomial, normal, normal_, random_, uniform_
from .views_and_stacks import (broadcast_tensors, broadcast_to, column_stack, dstack, hstack, movedim, moveaxis,
                               row_stack, select, swapaxes, unflatten, vstack)


def _logical_not(input):
    data = input._data
    return wrap(~data if data.dtype.kind == "b" else data == 0)


def _elementwise_test(name):
    """isnan / isinf / isfinite: a bool tensor from the array module's test of that name."""

    def test(input):
        return wrap(getattr(array_module(input._data), name)(input._data))

    test.__name__ = name
    return test


isnan = _elementwise_test("isnan")
isinf = _elementwise_test("isinf")
isfinite = _elementwise_test("isfinite")


def _square(input):
    return mul(input, input)


def numel(input):
    """The number of elements of `input` (torch.numel)."""
    return input.numel()


square = _square
logical_not = _logical_not


def _new(factory_name):
    def new(self, *size, dtype=None, device=None, requires_grad=False):
        from .. import factories

        return getattr(factories, factory_name)(*size, dtype=self.dtype if dtype is None else dtype,
                                                device=self.device if device is None else device,
                                                requires_grad=requires_grad)

    return new


def _new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
    from .. import factories

    return factories.full(size, fill_value, dtype=self.dtype if dtype is None else dtype,
                          device=self.device if device is None else device, requires_grad=requires_grad)


def _new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    from .. import factories

    return factories.tensor(data, dtype=self.dtype if dtype is None else dtype,
                            device=self.device if device is None else device, requires_grad=requires_grad)


def _where_method(self, condition, other):
    return where(condition, self, other)


def _stride(self, dim=None):
    """Strides in elements (PyTorch's unit), not NumPy's bytes."""
    strides = tuple(step // self._data.itemsize for step in self._data.strides)
    return strides if dim is None else strides[dim]


def _view_as(self, other):
    return view(self, other.shape)


def _reshape_as(self, other):
    return reshape(self, other.shape)


def _inplace_setitem(self, index, value):
    setitem(self, index, value)


TENSOR_METHODS = {
    # arithmetic
    "add": add, "sub": sub, "mul": mul, "div": div, "neg": neg, "pow": pow, "square": _square,
    "__add__": add, "__radd__": add, "__sub__": sub, "__rsub__": rsub, "__mul__": mul, "__rmul__": mul,
    "__truediv__": div, "__rtruediv__": rdiv, "floor_divide": floor_divide, "remainder": remainder,
    "__floordiv__": floor_divide, "__rfloordiv__": lambda self, other: floor_divide(other, self),
    "__mod__": remainder, "__rmod__": lambda self, other: remainder(other, self), "__pow__": pow, "__rpow__": rpow, "__neg__": neg,
    "__pos__": lambda self: self, "__abs__": abs,
    "__matmul__": matmul, "__rmatmul__": lambda self, other: matmul(other, self),
    "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "__eq__": eq_operator, "__ne__": ne_operator, "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
    "__and__": logical_and, "__or__": logical_or, "__xor__": logical_xor, "__invert__": _logical_not,
    "logical_not": _logical_not, "isnan": isnan, "isinf": isinf, "isfinite": isfinite,
    # elementwise
    "exp": exp, "log": log, "log1p": log1p, "expm1": expm1, "sqrt": sqrt, "abs": abs, "sin": sin, "cos": cos, "sign": sign, "erf": erf,
    "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "clamp": clamp, "clip": clamp,
    "maximum": maximum, "minimum": minimum, "where": _where_method, "masked_fill": masked_fill,
    # reductions
    "sum": sum, "mean": mean, "max": max, "min": min, "amax": amax, "amin": amin, "var": var, "std": std,
    "prod": prod, "argmax": argmax, "argmin": argmin, "logsumexp": logsumexp, "all": all, "any": any,
    # linear algebra
    "matmul": matmul, "mm": mm, "bmm": bmm, "dot": dot,
    # shape
    "reshape": reshape, "view": view, "view_as": _view_as, "reshape_as": _reshape_as, "flatten": flatten,
    "transpose": transpose, "t": t, "permute": permute, "squeeze": squeeze, "unsqueeze": unsqueeze,
    "expand": expand, "expand_as": expand_as, "repeat": repeat, "split": split, "chunk": chunk,
    "unbind": unbind, "narrow": narrow, "contiguous": contiguous, "clone": clone,
    "flip": lambda self, *dims: flip(self, dims[0] if len(dims) == 1 else dims),
    # indexing
    "__getitem__": getitem, "__setitem__": _inplace_setitem, "gather": gather, "index_select": index_select,
    # softmax
    "softmax": softmax, "log_softmax": log_softmax,
    # sorting, scattering, rearranging, norms and comparisons
    "sort": sort, "argsort": argsort, "msort": msort, "topk": topk, "kthvalue": kthvalue, "unique": unique,
    "unique_consecutive": unique_consecutive, "cumsum": cumsum, "cumprod": cumprod, "cummax": cummax,
    "cummin": cummin, "logcumsumexp": logcumsumexp,
    "scatter": scatter, "scatter_add": scatter_add, "scatter_reduce": scatter_reduce, "index_add": index_add, "index_copy": index_copy,
    "index_fill": index_fill, "nonzero": nonzero, "argwhere": argwhere,
    "roll": roll, "rot90": rot90, "tril": tril, "triu": triu, "diag": diag, "diagonal": diagonal,
    "index_put": index_put, "masked_scatter": masked_scatter,
    "fill_diagonal_": in_place_form("fill_diagonal_", fill_diagonal),
    "repeat_interleave": repeat_interleave, "tensor_split": tensor_split,
    "outer": outer, "ger": outer, "addmm": addmm, "baddbmm": baddbmm, "norm": norm,
    "isclose": isclose, "allclose": allclose, "equal": equal, "lerp": lerp, "nan_to_num": nan_to_num,
    **{name + "_": in_place_form(name + "_", op) for name, op in (
        ("scatter", scatter), ("scatter_add", scatter_add), ("scatter_reduce", scatter_reduce), ("index_add", index_add), ("index_copy", index_copy),
        ("index_fill", index_fill), ("masked_fill", masked_fill), ("index_put", index_put),
        ("masked_scatter", masked_scatter), ("tril", tril), ("triu", triu), ("lerp", lerp),
        ("nan_to_num", nan_to_num))},
    # more math, views, selections and reductions under PyTorch's other names
    **{function.__name__: function for function in (
        acos, acosh, addcdiv, addcmul, asin, asinh, atan, atan2, atanh, ceil, clamp_max, clamp_min, cosh, exp2, floor,
        frac, log2, log10, reciprocal, round, rsqrt, sinh, tan, trunc, count_nonzero, median, nanmean, nanmedian,
        nansum, diff, masked_select, take, take_along_dim, broadcast_to, movedim, select, swapaxes, unflatten,
        cross, inner, kron, mv, trace, vdot, bincount, multinomial, bernoulli, normal_, uniform_, bernoulli_,
        exponential_, random_)},
    "hypot": hypot, "logaddexp": logaddexp, "logit": logit, "xlogy": xlogy, "deg2rad": deg2rad, "rad2deg": rad2deg,
    "dist": dist, "sgn": sign, "nelement": lambda self: self.numel(), "ndimension": lambda self: self.ndim,
    "split_with_sizes": lambda self, split_sizes, dim=0: split(self, list(split_sizes), dim),
    "stride": _stride, "sum_to_size": lambda self, *size: sum_to_shape(self, integers("sum_to_size", size)),
    "moveaxis": moveaxis, "absolute": abs, "arctan2": atan2, "fix": trunc, "negative": neg, "multiply": mul,
    "divide": div, "subtract": sub, "true_divide": div, "greater": gt, "less": lt, "greater_equal": ge,
    "less_equal": le, "not_equal": ne, "arccos": acos, "arcsin": asin, "arctan": atan,
    **{name + "_": in_place_form(name + "_", op) for name, op in (
        ("exp", exp), ("log", log), ("sqrt", sqrt), ("neg", neg), ("abs", abs), ("sigmoid", sigmoid),
        ("tanh", tanh), ("sin", sin), ("cos", cos), ("floor", floor), ("ceil", ceil), ("round", round),
        ("trunc", trunc), ("reciprocal", reciprocal), ("rsqrt", rsqrt), ("addcmul", addcmul), ("addcdiv", addcdiv),
        ("clamp_min", clamp_min), ("clamp_max", clamp_max), ("square", _square), ("frac", frac),
        ("log1p", log1p), ("expm1", expm1), ("sign", sign))},
    # conversion
    "to": to, "cpu": cpu, "cuda": cuda, "float": float_, "double": double, "half": half, "long": long,
    "int": int_, "bool": bool_, "type_as": type_as, "type": legacy_types.type_,
    "new_zeros": _new("zeros"), "new_ones": _new("ones"), "new_empty": _new("empty"),
    "new_full": _new_full, "new_tensor": _new_tensor,
    # in place
    "add_": add_, "sub_": sub_, "mul_": mul_, "div_": div_, "pow_": pow_, "clamp_": clamp_, "clip_": clamp_,
    "relu_": relu_, "zero_": zero_, "fill_": fill_, "copy_": copy_,
    "__iadd__": add_, "__isub__": sub_, "__imul__": mul_, "__itruediv__": div_, "__ipow__": pow_,
}

for _name, _function in TENSOR_METHODS.items():
    setattr(Tensor, _name, _function)
Tensor.T = property(reverse_dims)
Tensor.mT = property(lambda self: transpose(self, -2, -1))
