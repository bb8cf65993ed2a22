"""default_collate against torch.utils.data.default_collate: structure, values and dtypes."""
import collections

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate as torch_collate

import distrain
from distrain.data import default_collate

from .oracle import assert_same, plain

Point = collections.namedtuple("Point", ["x", "label"])


def check(samples, torch_samples=None):
    """Collate `samples` with both; torch sees `torch_samples` (default: the same samples)."""
    ours = default_collate(samples)
    reference = torch_collate(samples if torch_samples is None else torch_samples)
    assert_same(plain(ours), plain(reference))
    return ours


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("shape", [(), (3,), (2, 4)])
def test_arrays(dtype, shape):
    rng = np.random.default_rng(0)
    samples = [(rng.standard_normal(shape) * 5).astype(dtype) for _ in range(4)]
    batch = check(samples)
    assert isinstance(batch, distrain.Tensor)
    assert tuple(batch.shape) == (4, *shape)


def test_numpy_scalars():
    check([np.float32(1.5), np.float32(-2.0)])
    check([np.int16(3), np.int16(4), np.int16(5)])


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32"])
def test_distrain_tensors(dtype):
    rng = np.random.default_rng(1)
    arrays = [(rng.standard_normal((2, 3)) * 4).astype(dtype) for _ in range(3)]
    batch = check([distrain.tensor(a) for a in arrays], [torch.tensor(a) for a in arrays])
    assert isinstance(batch, distrain.Tensor)
    assert batch.dtype == getattr(distrain, dtype)


def test_zero_dim_tensors():
    check([distrain.tensor(1.5), distrain.tensor(2.5)], [torch.tensor(1.5), torch.tensor(2.5)])


def test_python_numbers_become_int64_float64_bool():
    ints = check([1, 2, 3])
    floats = check([1.0, 2.5, -3.0])
    bools = check([True, False, True])
    assert ints.dtype == distrain.int64
    assert floats.dtype == distrain.float64
    assert bools.dtype == distrain.bool_
    np.testing.assert_array_equal(bools.numpy(), [True, False, True])


def test_strings_stay_a_list():
    batch = check(["a", "bc", "def"])
    assert batch == ["a", "bc", "def"]


def test_dict():
    samples = [{"image": np.full((2, 2), i, np.float32), "label": i, "name": f"s{i}"} for i in range(3)]
    batch = check(samples)
    assert isinstance(batch, dict) and list(batch) == ["image", "label", "name"]
    assert batch["name"] == ["s0", "s1", "s2"]


def test_tuples():
    samples = [(np.arange(3) + i, float(i)) for i in range(4)]
    batch = check(samples)
    x, y = batch  # tuple samples unpack as (inputs, labels), as with torch's list
    assert tuple(x.shape) == (4, 3)
    assert y.dtype == distrain.float64


def test_lists():
    samples = [[i, i * 0.5, np.array([i, i], np.int32)] for i in range(3)]
    batch = check(samples)
    assert isinstance(batch, list) and len(batch) == 3


def test_namedtuples():
    samples = [Point(np.ones(2) * i, i) for i in range(3)]
    batch = check(samples)
    assert isinstance(batch, Point)
    np.testing.assert_array_equal(batch.label.numpy(), [0, 1, 2])


def test_nested():
    samples = [
        {"pair": (np.arange(2) * i, {"score": i / 2, "ok": bool(i % 2)}),
         "points": [Point(np.float32(i), i), Point(np.float32(-i), -i)],
         "tag": "t"}
        for i in range(4)
    ]
    batch = check(samples)
    assert batch["tag"] == ["t"] * 4
    assert batch["pair"][1]["ok"].dtype == distrain.bool_
    assert batch["points"][1].x.dtype == distrain.float32


def test_batch_of_one():
    check([np.arange(5)])
    check([{"a": 1}])


def test_mismatched_shapes_raise_a_clear_error():
    with pytest.raises(RuntimeError, match=r"(?s)different shapes.*\(3,\).*\(4,\)"):
        default_collate([np.zeros(3), np.zeros(4)])
    with pytest.raises(RuntimeError):
        torch_collate([np.zeros(3), np.zeros(4)])
    with pytest.raises(RuntimeError, match="shape"):
        default_collate([{"x": distrain.zeros(2, 2)}, {"x": distrain.zeros(2, 3)}])


def test_sequences_of_different_lengths_raise():
    with pytest.raises(RuntimeError):
        default_collate([[1, 2], [3]])
    with pytest.raises(RuntimeError):
        torch_collate([[1, 2], [3]])


def test_unsupported_type_raises_type_error():
    with pytest.raises(TypeError, match="object"):
        default_collate([object(), object()])
    with pytest.raises(TypeError):
        torch_collate([object(), object()])
