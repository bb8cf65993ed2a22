"""The legacy tensor types old PyTorch code (the lecture's) uses: distrain.FloatTensor, distrain.cuda.FloatTensor."""
import numpy as np
import pytest
import torch

import distrain


@pytest.mark.parametrize("name", ["FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "ByteTensor", "BoolTensor"])
def test_cpu_legacy_type_makes_and_names_tensors_like_torch(name):
    ours, theirs = getattr(distrain, name)([1, 0, 3]), getattr(torch, name)([1, 0, 3])
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "distrain.")
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert ours.type() == theirs.type().replace("torch.", "distrain.")
    assert tuple(getattr(distrain, name)(2, 3).shape) == (2, 3)


def test_type_converts_to_a_legacy_type_a_dtype_or_a_name():
    x = distrain.tensor([1.5, -2.0])
    assert x.type(distrain.DoubleTensor).dtype == distrain.float64
    assert x.type(distrain.int64).tolist() == [1, -2]
    assert x.type("distrain.LongTensor").dtype == distrain.int64


def test_the_lecture_line_assigning_the_cuda_type_runs_without_a_gpu():
    dtype = distrain.cuda.FloatTensor  # the lecture's `dtype = torch.cuda.FloatTensor`
    assert dtype.dtype == distrain.float32 and str(dtype.device).startswith("cuda")
