"""Max pooling's key cases with the NumPy reference kernels forced (DISTRAIN_KERNELS=numpy).

test_pooling.py runs on the path this process chose (numba when installed); here the
kernel choice is monkeypatched to "numpy", so the reference that runs without numba
(and on CuPy) is checked against torch through the op, forward and backward.
"""
import pytest

import distrain.engine.kernels as kernels

from . import test_pooling


@pytest.fixture(autouse=True)
def numpy_kernels(monkeypatch):
    monkeypatch.setattr(kernels, "_path", "numpy")


@pytest.mark.parametrize("dtype", test_pooling.FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(test_pooling.MAX_CASES))
def test_max_pool2d_matches_torch_on_the_numpy_path(case, dtype, device):
    assert kernels.active() == "numpy"
    test_pooling.test_max_pool2d_matches_torch(case, dtype, device)


@pytest.mark.parametrize("case", list(test_pooling.MAX_CASES))
def test_max_pool2d_return_indices_match_torch_on_the_numpy_path(case, device):
    test_pooling.test_max_pool2d_return_indices_match_torch(case, device)


def test_max_pool2d_ties_and_padding_on_the_numpy_path(device):
    test_pooling.test_max_pool2d_gradient_goes_to_one_maximum_per_window_on_ties(device)
    test_pooling.test_max_pool2d_with_negative_inputs_and_padding(device)
