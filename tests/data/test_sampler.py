"""Samplers: order, randomness, batching and the per-rank split, against torch.utils.data."""
import itertools

import pytest
import torch.utils.data as tud

import distrain
from distrain.data import BatchSampler, DistributedSampler, RandomSampler, SequentialSampler, SubsetRandomSampler


def data(n):
    return list(range(n))


# ----------------------------------------------------------------------------- Sequential / Random

@pytest.mark.parametrize("n", [0, 1, 7])
def test_sequential_sampler(n):
    sampler = SequentialSampler(data(n))
    assert list(sampler) == list(tud.SequentialSampler(data(n))) == list(range(n))
    assert len(sampler) == n


def test_random_sampler_is_a_permutation_that_changes_per_epoch():
    sampler = RandomSampler(data(50))
    first, second = list(sampler), list(sampler)
    assert len(sampler) == 50
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != list(range(50))
    assert first != second, "each pass must draw a new permutation"


def test_random_sampler_seeded_generator_is_reproducible():
    first = list(RandomSampler(data(40), generator=distrain.Generator(seed=5)))
    second = list(RandomSampler(data(40), generator=distrain.Generator(seed=5)))
    other = list(RandomSampler(data(40), generator=distrain.Generator(seed=6)))
    assert first == second
    assert first != other


@pytest.mark.parametrize("replacement", [False, True])
def test_random_sampler_with_a_user_generator_draws_a_new_order_every_epoch_like_torch(replacement):
    """The generator is advanced, not reseeded, by each pass: epochs differ, and the sequence of
    epochs is fixed by the generator's seed (torch's RandomSampler with a torch.Generator does the same)."""
    import torch

    def epochs(sampler, count=5):
        return [tuple(sampler) for _ in range(count)]

    ours = epochs(RandomSampler(data(30), replacement=replacement, generator=distrain.Generator(seed=4)))
    theirs = epochs(tud.RandomSampler(data(30), replacement=replacement, generator=torch.Generator().manual_seed(4)))
    assert len(set(theirs)) == 5, "the oracle: torch draws a new order every epoch"
    assert len(set(ours)) == 5, "every epoch must draw a new order from the user's generator"
    again = epochs(RandomSampler(data(30), replacement=replacement, generator=distrain.Generator(seed=4)))
    assert again == ours, "and the epochs' orders are fixed by the generator's seed"
    if not replacement:
        assert all(sorted(order) == list(range(30)) for order in ours)


def test_a_loader_shuffling_with_a_user_generator_draws_a_new_order_every_epoch():
    from distrain.data import DataLoader

    loader = DataLoader(data(30), batch_size=30, shuffle=True, generator=distrain.Generator(seed=4))
    orders = [tuple(int(i) for i in next(iter(loader)).numpy()) for _ in range(4)]
    assert len(set(orders)) == 4


def test_random_sampler_follows_manual_seed():
    distrain.manual_seed(3)
    first = list(RandomSampler(data(40)))
    distrain.manual_seed(3)
    second = list(RandomSampler(data(40)))
    assert first == second


@pytest.mark.parametrize("num_samples", [1, 5, 23])
def test_random_sampler_with_replacement(num_samples):
    sampler = RandomSampler(data(10), replacement=True, num_samples=num_samples,
                            generator=distrain.Generator(seed=0))
    drawn = list(sampler)
    assert len(sampler) == len(drawn) == num_samples
    assert all(0 <= i < 10 for i in drawn)
    assert all(isinstance(i, int) for i in drawn)


def test_random_sampler_with_replacement_repeats():
    drawn = list(RandomSampler(data(5), replacement=True, num_samples=200, generator=distrain.Generator(seed=0)))
    assert set(drawn) == set(range(5))  # 200 draws from 5 values cover them all


@pytest.mark.parametrize("num_samples", [3, 10, 25])
def test_random_sampler_num_samples_without_replacement(num_samples):
    drawn = list(RandomSampler(data(10), num_samples=num_samples, generator=distrain.Generator(seed=1)))
    assert len(drawn) == num_samples == len(tud.RandomSampler(data(10), num_samples=num_samples))
    # like torch: whole permutations back to back, so each full block of 10 holds every index once
    for start in range(0, num_samples - num_samples % 10, 10):
        assert sorted(drawn[start:start + 10]) == list(range(10))
    assert len(set(drawn[num_samples - num_samples % 10:])) == num_samples % 10


@pytest.mark.parametrize("num_samples", [0, -1, 2.5])
def test_random_sampler_bad_num_samples(num_samples):
    with pytest.raises(ValueError):
        RandomSampler(data(4), num_samples=num_samples)


def test_subset_random_sampler():
    indices = [3, 17, 4, 99, 12]
    sampler = SubsetRandomSampler(indices, generator=distrain.Generator(seed=0))
    draws = [list(sampler) for _ in range(5)]
    assert len(sampler) == 5
    assert all(sorted(d) == sorted(indices) for d in draws)
    assert len({tuple(d) for d in draws}) > 1, "the order must change between passes"
    again = SubsetRandomSampler(indices, generator=distrain.Generator(seed=0))
    assert list(again) == draws[0]


# ----------------------------------------------------------------------------- BatchSampler

@pytest.mark.parametrize("n", [0, 1, 9, 10, 11])
@pytest.mark.parametrize("batch_size", [1, 3, 5, 10, 12])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_sampler_matches_torch(n, batch_size, drop_last):
    ours = BatchSampler(SequentialSampler(data(n)), batch_size, drop_last)
    reference = tud.BatchSampler(tud.SequentialSampler(data(n)), batch_size, drop_last)
    assert list(ours) == list(reference)
    assert len(ours) == len(reference)


def test_batch_sampler_over_a_list():
    assert list(BatchSampler([4, 2, 0, 1, 3], 2, False)) == [[4, 2], [0, 1], [3]]


@pytest.mark.parametrize("batch_size", [0, -2, 1.5, True, None])
def test_batch_sampler_bad_batch_size(batch_size):
    with pytest.raises(ValueError):
        BatchSampler(SequentialSampler(data(4)), batch_size, False)
    with pytest.raises(ValueError):
        tud.BatchSampler(tud.SequentialSampler(data(4)), batch_size, False)


# ----------------------------------------------------------------------------- DistributedSampler

DISTRIBUTED_CASES = list(itertools.product([1, 2, 3, 4], [1, 2, 3, 7, 8, 10, 13], [False, True]))


@pytest.mark.parametrize("num_replicas,n,drop_last", DISTRIBUTED_CASES)
def test_distributed_sampler_unshuffled_equals_torch(num_replicas, n, drop_last):
    for rank in range(num_replicas):
        ours = DistributedSampler(data(n), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=drop_last)
        reference = tud.DistributedSampler(data(n), num_replicas=num_replicas, rank=rank, shuffle=False,
                                           drop_last=drop_last)
        assert list(ours) == list(reference), f"rank {rank}"
        assert len(ours) == len(reference), f"rank {rank}"
        assert ours.num_samples == reference.num_samples
        assert ours.total_size == reference.total_size


@pytest.mark.parametrize("num_replicas,n,drop_last", DISTRIBUTED_CASES)
def test_distributed_sampler_shuffled_shares(num_replicas, n, drop_last):
    samplers = [DistributedSampler(data(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=11,
                                   drop_last=drop_last) for rank in range(num_replicas)]
    references = [tud.DistributedSampler(data(n), num_replicas=num_replicas, rank=rank, shuffle=True,
                                         drop_last=drop_last) for rank in range(num_replicas)]
    shares = [list(s) for s in samplers]
    lengths = {len(share) for share in shares}
    assert lengths == {len(samplers[0])} == {len(r) for r in references}, "every rank must have the same length"
    union = [i for share in shares for i in share]
    if drop_last:
        assert len(set(union)) == len(union) == (n // num_replicas) * num_replicas, "no sample twice"
    else:
        assert set(union) == set(range(n)), "the ranks together cover the dataset"
        assert len(union) == -(-n // num_replicas) * num_replicas
        if n % num_replicas == 0:
            assert sorted(union) == list(range(n))


def test_distributed_sampler_padding_repeats_the_start_of_the_order():
    # 10 samples over 4 ranks: 12 slots, the first 2 of the (shuffled) order repeated
    shares = [list(DistributedSampler(data(10), num_replicas=4, rank=r, seed=3)) for r in range(4)]
    order = [None] * 12
    for rank, share in enumerate(shares):
        order[rank::4] = share
    assert sorted(order[:10]) == list(range(10))
    assert order[10:] == order[:2]


def test_distributed_sampler_set_epoch_changes_the_order():
    sampler = DistributedSampler(data(40), num_replicas=2, rank=1, seed=0)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0, "without set_epoch every pass repeats the shuffle"
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    twin = DistributedSampler(data(40), num_replicas=2, rank=1, seed=0)
    twin.set_epoch(1)
    assert list(twin) == epoch1, "same seed and epoch, same order (every rank agrees)"
    other_seed = DistributedSampler(data(40), num_replicas=2, rank=1, seed=1)
    assert list(other_seed) != epoch0


def test_distributed_sampler_ranks_agree_on_the_shuffle_for_every_epoch():
    for epoch in range(3):
        samplers = [DistributedSampler(data(24), num_replicas=3, rank=r, seed=9) for r in range(3)]
        for s in samplers:
            s.set_epoch(epoch)
        union = sorted(i for s in samplers for i in s)
        assert union == list(range(24)), f"epoch {epoch}: ranks must split one common order"


@pytest.mark.parametrize("rank", [-1, 2, 5])
def test_distributed_sampler_bad_rank(rank):
    with pytest.raises(ValueError):
        DistributedSampler(data(8), num_replicas=2, rank=rank)
    with pytest.raises(ValueError):
        tud.DistributedSampler(data(8), num_replicas=2, rank=rank)


def test_distributed_sampler_without_world_needs_explicit_arguments(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="num_replicas"):
        DistributedSampler(data(8))
    with pytest.raises(RuntimeError):
        DistributedSampler(data(8), num_replicas=2)
    with pytest.raises(RuntimeError):
        DistributedSampler(data(8), rank=0)


def test_distributed_sampler_reads_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    sampler = DistributedSampler(data(9), shuffle=False)
    assert (sampler.num_replicas, sampler.rank) == (3, 2)
    assert list(sampler) == [2, 5, 8]
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError):
        DistributedSampler(data(9))
