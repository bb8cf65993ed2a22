"""NOTE [ Deterministic datasets ]: batches that draw no random numbers skip the per-batch reseeding."""
import numpy
import pytest

from distrain.data import DataLoader, ShardDataset, Subset, TensorDataset, write_shards
from distrain.data import worker


def counting_reseeds(monkeypatch):
    calls = []
    original = worker.seed_everything
    monkeypatch.setattr(worker, "seed_everything", lambda seed: (calls.append(seed), original(seed)))
    return calls


class Scale:
    def __init__(self, says):
        if says is not None:
            self.draws_random_numbers = says

    def __call__(self, batch):
        return {"x": batch["x"] * 2}


@pytest.fixture
def shards(tmp_path):
    return write_shards(str(tmp_path / "data"), {"x": numpy.arange(40, dtype=numpy.float32)}, samples_per_shard=16)


@pytest.mark.parametrize("make, reseeds", [
    (lambda path: TensorDataset(numpy.arange(40.0)), False),
    (lambda path: ShardDataset(path), False),
    (lambda path: Subset(ShardDataset(path), range(30)), False),
    (lambda path: ShardDataset(path, batch_transform=Scale(says=False)), False),
    (lambda path: ShardDataset(path, batch_transform=Scale(says=None)), True),  # unknown: assumed random
    (lambda path: ShardDataset(path, batch_transform=Scale(says=True)), True),
])
def test_only_batches_that_may_draw_random_numbers_are_reseeded(shards, monkeypatch, make, reseeds):
    calls = counting_reseeds(monkeypatch)
    batches = list(DataLoader(make(shards), batch_size=8, shuffle=True, seed=0))
    assert len(calls) == (len(batches) if reseeds else 0)
    numpy.random.seed(5)
    expected = numpy.random.rand(3)
    numpy.random.seed(5)
    list(DataLoader(make(shards), batch_size=8, shuffle=True, seed=0))
    assert numpy.array_equal(numpy.random.rand(3), expected)  # the user's generator is untouched either way


def test_a_collate_fn_may_draw_random_numbers_so_it_is_reseeded(monkeypatch):
    calls = counting_reseeds(monkeypatch)
    loader = DataLoader(TensorDataset(numpy.arange(16.0)), batch_size=4, collate_fn=lambda samples: samples)
    assert len(list(loader)) == 4 and len(calls) == 4
