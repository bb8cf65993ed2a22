"""einsum against PyTorch: matrix products, batched products (attention), traces and diagonals,
sums over letters only one operand has, ellipsis with broadcasting, implicit output, three and
more operands; gradients (first and second order) and the errors for bad equations."""
import numpy as np
import pytest
import torch

import distrain

from .oracle import (
    FLOAT_DTYPES,
    check_finite_differences,
    check_op_against_torch,
    check_second_order_against_torch,
    pair,
    to_distrain,
)

RNG = np.random.default_rng(2)


def arrays(*shapes):
    return [RNG.standard_normal(shape) for shape in shapes]


CASES = {
    "matmul": ("ij,jk->ik", arrays((3, 4), (4, 5))),
    "matmul_implicit": ("ij,jk", arrays((3, 4), (4, 5))),
    "transposed_product": ("ji,kj->ik", arrays((4, 3), (5, 4))),
    "batched": ("bij,bjk->bik", arrays((2, 3, 4), (2, 4, 5))),
    "attention_scores": ("bhqd,bhkd->bhqk", arrays((2, 3, 4, 5), (2, 3, 6, 5))),
    "attention_values": ("bhqk,bhkd->bqhd", arrays((2, 3, 4, 6), (2, 3, 6, 5))),
    "outer": ("i,j->ij", arrays((3,), (4,))),
    "dot": ("i,i->", arrays((5,), (5,))),
    "hadamard": ("ij,ij->ij", arrays((3, 4), (3, 4))),
    "row_sums_then_product": ("ij,jk->i", arrays((3, 4), (4, 5))),
    "letter_only_in_one": ("ijx,jk->ik", arrays((3, 4, 2), (4, 5))),
    "transpose": ("ij->ji", arrays((3, 4))),
    "sum_all": ("ij->", arrays((3, 4))),
    "column_sums": ("ij->j", arrays((3, 4))),
    "trace": ("ii", arrays((4, 4))),
    "diagonal": ("ii->i", arrays((4, 4))),
    "batched_diagonal": ("bii->bi", arrays((2, 3, 3))),
    "diagonal_times_vector": ("iij,j->i", arrays((3, 3, 4), (4,))),
    "ellipsis_matmul": ("...ij,...jk->...ik", arrays((2, 3, 4), (2, 4, 5))),
    "ellipsis_broadcast": ("...ij,...jk->...ik", arrays((2, 1, 3, 4), (3, 4, 5))),
    "ellipsis_summed": ("...i,...i", arrays((2, 3), (2, 3))),
    "ellipsis_implicit": ("...ij->...ji", arrays((2, 3, 4))),
    "three_operands": ("ij,jk,kl->il", arrays((3, 4), (4, 5), (5, 2))),
    "bilinear": ("bn,anm,bm->ba", arrays((2, 3), (4, 3, 5), (2, 5))),
    "four_operands": ("ab,bc,cd,de->ae", arrays((2, 3), (3, 4), (4, 3), (3, 2))),
    "spaces": ("i j , j k -> i k", arrays((3, 4), (4, 5))),
    "uppercase": ("Ab,bC->AC", arrays((3, 4), (4, 5))),
    "size_one_broadcast": ("ij,ij->ij", arrays((1, 4), (3, 4))),
}


@pytest.mark.parametrize("name", CASES)
def test_einsum_against_torch(name):
    equation, inputs = CASES[name]
    check_op_against_torch(*pair(lambda lib, *xs: lib.einsum(equation, *xs)), inputs, FLOAT_DTYPES)


@pytest.mark.parametrize("name", ["batched", "trace", "diagonal_times_vector", "letter_only_in_one", "three_operands",
                                  "ellipsis_broadcast"])
def test_einsum_gradients_of_gradients(name):
    equation, inputs = CASES[name]
    check_finite_differences(lambda *xs: distrain.einsum(equation, *xs), inputs)
    check_second_order_against_torch(*pair(lambda lib, *xs: lib.einsum(equation, *xs) ** 2), inputs)


def test_operands_as_a_list_and_integers():
    a, b = np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4)
    check_op_against_torch(*pair(lambda lib, x, y: lib.einsum("ij,jk->ik", [x, y])), [a, b])


@pytest.mark.parametrize("equation, shapes, error, message", [
    ("ij,jk->ik", [(3, 4), (5, 6)], distrain.ShapeError, "subscript 'j'"),
    ("ij,jk->ik", [(3, 4)], distrain.ArgumentError, "names 2 operand"),
    ("ijk->i", [(3, 4)], distrain.ShapeError, "name 3 dimension"),
    ("ij->k", [(3, 4)], distrain.ArgumentError, "output subscript 'k'"),
    ("ij->ii", [(3, 4)], distrain.ArgumentError, "output subscript 'i'"),
    ("i1->i", [(3, 4)], distrain.ArgumentError, "only letters"),
])
def test_bad_equations_are_named(equation, shapes, error, message):
    operands = [to_distrain(RNG.standard_normal(shape)) for shape in shapes]
    with pytest.raises(error, match=message):
        distrain.einsum(equation, *operands)
    with pytest.raises(RuntimeError):
        torch.einsum(equation, *[torch.randn(shape) for shape in shapes])


def test_mixed_dtypes_are_refused_as_in_torch():
    with pytest.raises(distrain.DTypeError, match="operand 0"):
        distrain.einsum("ij,jk", distrain.ones(2, 2), distrain.ones(2, 2, dtype=distrain.float64))
