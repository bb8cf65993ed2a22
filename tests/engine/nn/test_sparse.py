"""Embedding against torch.nn.Embedding: lookup, gradients (repeated ids, padding_idx), max_norm, from_pretrained."""
import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn

from ..oracle import FLOAT_DTYPES, assert_close, to_distrain, to_numpy, to_torch
from .module_oracle import check_module_against_torch, twins

IDS = np.array([[1, 3, 3, 0], [4, 1, 3, 9]], dtype=np.int64)  # 3 appears three times, 1 twice


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("ids", [IDS, IDS[0], np.array(7, dtype=np.int64), IDS.reshape(2, 2, 2)],
                         ids=lambda a: str(a.shape))
def test_embedding_matches_torch(ids, dtype, device):
    d, t = twins(nn.Embedding(10, 3), torch.nn.Embedding(10, 3), dtype, device)
    check_module_against_torch(d, t, [ids], dtype, device)


def test_embedding_repeated_ids_accumulate_gradients(device):
    d = nn.Embedding(10, 3).to(device)
    out = d(to_distrain(IDS, device))
    out.backward(to_distrain(np.ones((2, 4, 3), dtype=np.float32), device))
    counts = np.bincount(IDS.reshape(-1), minlength=10)
    np.testing.assert_array_equal(to_numpy(d.weight.grad), np.repeat(counts[:, None], 3, axis=1).astype(np.float32))


@pytest.mark.parametrize("padding_idx", [3, -7])
def test_embedding_padding_idx_row_starts_at_zero_and_gets_no_gradient(padding_idx, device):
    distrain.manual_seed(0)
    d = nn.Embedding(10, 3, padding_idx=padding_idx).to(device)
    assert d.padding_idx == 3  # normalised like torch's
    assert torch.nn.Embedding(10, 3, padding_idx=padding_idx).padding_idx == 3
    np.testing.assert_array_equal(to_numpy(d.weight)[3], np.zeros(3))
    assert np.all(to_numpy(d.weight)[np.arange(10) != 3] != 0)
    d, t = twins(d, torch.nn.Embedding(10, 3, padding_idx=padding_idx), np.float64, device)
    check_module_against_torch(d, t, [IDS], np.float64, device)
    np.testing.assert_array_equal(to_numpy(d.weight.grad)[3], np.zeros(3))


def test_embedding_padding_row_with_nonzero_values_is_looked_up_but_not_trained(device):
    t = torch.nn.Embedding(10, 3, padding_idx=0)
    with torch.no_grad():
        t.weight[0] = 5.0
    d, t = twins(nn.Embedding(10, 3, padding_idx=0), t, np.float64, device)
    check_module_against_torch(d, t, [IDS], np.float64, device)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0])
def test_embedding_max_norm_renormalises_rows_like_torch(norm_type, device):
    t = torch.nn.Embedding(10, 4, max_norm=1.0, norm_type=norm_type)
    with torch.no_grad():
        t.weight.mul_(3.0)  # most rows exceed the max norm
        t.weight[9] = 0.01   # one row is under it and must stay unchanged
    d, t = twins(nn.Embedding(10, 4, max_norm=1.0, norm_type=norm_type), t, np.float64, device)
    untouched = to_numpy(d.weight)[[2, 5]]  # ids not looked up are not renormalised
    # compares outputs, gradients, and (after forward) the renormalised weight itself
    check_module_against_torch(d, t, [IDS], np.float64, device)
    np.testing.assert_array_equal(to_numpy(d.weight)[[2, 5]], untouched)
    norms = (np.abs(to_numpy(d.weight)[np.unique(IDS)]) ** norm_type).sum(axis=1) ** (1 / norm_type)
    assert np.all(norms <= 1.0 + 1e-6)


def test_embedding_from_pretrained(device):
    table = np.random.default_rng(0).standard_normal((5, 3))
    frozen = nn.Embedding.from_pretrained(to_distrain(table, device))
    reference = torch.nn.Embedding.from_pretrained(to_torch(table))
    assert frozen.weight.requires_grad is False and reference.weight.requires_grad is False
    ids = np.array([4, 0, 4], dtype=np.int64)
    out = frozen(to_distrain(ids, device))
    assert_close(out, reference(to_torch(ids)))
    assert not out.requires_grad
    trainable = nn.Embedding.from_pretrained(to_distrain(table, device), freeze=False)
    assert trainable.weight.requires_grad is True
    trainable(to_distrain(ids, device)).sum().backward()
    np.testing.assert_array_equal(to_numpy(trainable.weight.grad)[:, 0], [1, 0, 0, 0, 2])
    assert repr(frozen) == repr(reference)


def test_embedding_out_of_range_ids_raise():
    d = nn.Embedding(5, 2)
    for bad in ([0, 5], [-1, 2]):
        with pytest.raises(distrain.DistrainError) as info:
            d(distrain.tensor(bad, dtype=distrain.int64))
        assert "5" in str(info.value)


def test_embedding_float_ids_are_refused():
    with pytest.raises(TypeError):
        nn.Embedding(5, 2)(distrain.tensor([1.0, 2.0]))


def test_embedding_repr_and_init_match_torch():
    assert repr(nn.Embedding(10, 3)) == repr(torch.nn.Embedding(10, 3))
    assert repr(nn.Embedding(10, 3, padding_idx=2)) == repr(torch.nn.Embedding(10, 3, padding_idx=2))
    distrain.manual_seed(0)
    w = to_numpy(nn.Embedding(1000, 100).weight)  # N(0, 1)
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01
