"""Datasets: TensorDataset, Subset, ConcatDataset, random_split and `ds1 + ds2`, against torch.utils.data."""
import numpy as np
import pytest
import torch
import torch.utils.data as tud

import distrain
from distrain.data import ConcatDataset, Dataset, Subset, TensorDataset, random_split

from .oracle import assert_same, plain


class Range(Dataset):
    """Sample i is i + offset (a Python int), so which dataset answered is visible."""

    def __init__(self, n, offset=0):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if not -self.n <= index < self.n:
            raise IndexError(index)
        return index % self.n + self.offset


# ----------------------------------------------------------------------------- TensorDataset

def test_tensor_dataset_of_arrays_gives_rows():
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    y = np.arange(6, dtype=np.int64)
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    for i in range(-6, 6):
        row, label = ds[i]
        np.testing.assert_array_equal(np.asarray(row), x[i])
        assert np.asarray(row).dtype == np.float32
        assert int(np.asarray(label)) == y[i]


def test_tensor_dataset_of_tensors_matches_torch():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.integers(0, 9, 5)
    ds = TensorDataset(distrain.tensor(x), distrain.tensor(y))
    reference = tud.TensorDataset(torch.tensor(x), torch.tensor(y))
    assert len(ds) == len(reference)
    for i in range(5):
        assert_same(plain(ds[i]), plain(reference[i]), f"sample {i}")


def test_tensor_dataset_lengths_must_agree():
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(ValueError):
        TensorDataset(distrain.zeros(3, 2), distrain.zeros(2))


def test_tensor_dataset_get_batch_equals_rows():
    x = np.arange(30).reshape(10, 3)
    y = np.arange(10) * 2.0
    ds = TensorDataset(x, y)
    indices = [7, 0, 3, 3]
    bx, by = ds.get_batch(indices)
    np.testing.assert_array_equal(np.asarray(bx), np.stack([x[i] for i in indices]))
    np.testing.assert_array_equal(np.asarray(by), y[indices])


# ----------------------------------------------------------------------------- Subset

def test_subset_reorders_and_matches_torch():
    base = Range(10)
    indices = [9, 2, 2, 5]
    subset = Subset(base, indices)
    reference = tud.Subset(list(range(10)), indices)
    assert len(subset) == len(reference) == 4
    assert [subset[i] for i in range(4)] == [reference[i] for i in range(4)] == indices
    assert subset[-1] == 5


def test_subset_of_tensor_dataset_keeps_get_batch():
    x = np.arange(20).reshape(10, 2)
    subset = Subset(TensorDataset(x), [8, 1, 4])
    (batch,) = subset.get_batch([2, 0])
    np.testing.assert_array_equal(np.asarray(batch), x[[4, 8]])
    assert not hasattr(Subset(Range(3), [0]), "get_batch")


# ----------------------------------------------------------------------------- ConcatDataset

def test_concat_dataset_matches_torch_for_every_index():
    sizes = [3, 0, 4, 1]
    ours = ConcatDataset([Range(n, offset=100 * k) for k, n in enumerate(sizes)])
    reference = tud.ConcatDataset([[100 * k + i for i in range(n)] for k, n in enumerate(sizes)])
    assert len(ours) == len(reference) == 8
    assert ours.cumulative_sizes == reference.cumulative_sizes
    for i in range(-8, 8):
        assert ours[i] == reference[i], f"index {i}"


@pytest.mark.parametrize("index", [8, 9, 100, -9, -100])
def test_concat_dataset_out_of_range(index):
    ours = ConcatDataset([Range(3), Range(5)])
    with pytest.raises(IndexError):
        ours[index]


def test_concat_dataset_needs_datasets():
    with pytest.raises(ValueError):
        ConcatDataset([])


def test_add_concatenates():
    combined = Range(2) + Range(3, offset=10)
    assert isinstance(combined, ConcatDataset)
    assert len(combined) == 5
    assert [combined[i] for i in range(5)] == [0, 1, 10, 11, 12]
    three = combined + Range(1, offset=50)
    assert [three[i] for i in range(len(three))] == [0, 1, 10, 11, 12, 50]


# ----------------------------------------------------------------------------- random_split

def _split_indices(parts):
    return [[part[i] for i in range(len(part))] for part in parts]


@pytest.mark.parametrize("n,lengths", [(10, [3, 7]), (10, [10, 0]), (7, [1, 2, 4]), (10, [0.3, 0.7]),
                                       (10, [0.5, 0.5]), (11, [0.33, 0.33, 0.34]), (5, [0.2, 0.2, 0.2, 0.2, 0.2]),
                                       (100, [0.25, 0.25, 0.5]), (7, [0.5, 0.5])])
def test_random_split_lengths_and_cover_match_torch(n, lengths):
    parts = random_split(Range(n), lengths, generator=distrain.Generator(seed=0))
    reference = tud.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [len(p) for p in reference]
    assert all(isinstance(p, Subset) for p in parts)
    values = [v for part in _split_indices(parts) for v in part]
    assert sorted(values) == list(range(n)), "the parts must be disjoint and cover the dataset"


def test_random_split_fractions_of_a_one_sample_dataset():
    # [0.5, 0.5] are fractions here even though they sum to len(dataset) == 1 (torch: lengths [1, 0])
    parts = random_split(Range(1), [0.5, 0.5], generator=distrain.Generator(seed=0))
    assert [len(p) for p in parts] == [1, 0]


def test_random_split_is_reproducible_with_manual_seed():
    distrain.manual_seed(123)
    first = _split_indices(random_split(Range(50), [10, 15, 25]))
    distrain.manual_seed(123)
    second = _split_indices(random_split(Range(50), [10, 15, 25]))
    assert first == second
    distrain.manual_seed(124)
    third = _split_indices(random_split(Range(50), [10, 15, 25]))
    assert third != first
    assert first != [list(range(10)), list(range(10, 25)), list(range(25, 50))], "the split must be shuffled"


def test_random_split_with_a_generator_ignores_the_global_seed():
    distrain.manual_seed(1)
    first = _split_indices(random_split(Range(30), [0.5, 0.5], generator=distrain.Generator(seed=7)))
    distrain.manual_seed(2)
    second = _split_indices(random_split(Range(30), [0.5, 0.5], generator=distrain.Generator(seed=7)))
    assert first == second


@pytest.mark.parametrize("lengths", [[3, 3], [5, 6], [0.5, 0.4], [0.6, 0.6]])
def test_random_split_bad_lengths(lengths):
    with pytest.raises(ValueError):
        random_split(Range(10), lengths)
    with pytest.raises(ValueError):
        tud.random_split(range(10), lengths)
