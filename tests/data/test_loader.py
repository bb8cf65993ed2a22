"""DataLoader: the batches it yields, for every num_workers, against torch.utils.data.DataLoader.

torch's loader (num_workers=0, whose batches do not depend on num_workers) is the oracle for
order, batching and collation; for randomness the oracle is distrain itself with
num_workers=0: a seeded loader must give the same batches, random transforms included,
whatever num_workers is. Faults (worker errors, deaths, timeouts, shared-memory leaks,
Ctrl-C) are in test_loader_faults.py.
"""
import os
import random

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import distrain
from distrain.data import (BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler, Subset,
                           TensorDataset, default_collate, get_worker_info)

from .oracle import assert_same_batches, collect

WORKERS = [0, 1, 2, 3]


class Squares(Dataset):
    """Sample i: (float32 [i, i*i], i, "s<i>")."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return np.array([index, index * index], np.float32), index, f"s{index}"


class RandomDraws(Dataset):
    """Sample i draws from every global generator a transform might use: random, numpy.random, distrain."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return {"index": index, "python": random.random(), "numpy": np.random.rand(3),
                "distrain": distrain.rand(2)}


class Stream(IterableDataset):
    """Yields 0..n-1 (as int64 arrays); with shard=True each worker yields only its share."""

    def __init__(self, n, shard=True):
        self.n, self.shard = n, shard

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None and self.shard else (0, 1)
        for i in range(worker, self.n, workers):
            yield np.array([i, -i], np.int64)


class TorchStream(tud.IterableDataset):
    """Stream for torch's loader (torch's own get_worker_info)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(worker, self.n, workers):
            yield np.array([i, -i], np.int64)


def torch_batches(dataset, **kwargs):
    return collect(tud.DataLoader(dataset, **kwargs))


def sample_ids(batches):
    """The sample numbers in a list of `plain` batches of Stream samples."""
    return [int(row[0]) for kind, array in batches for row in array.reshape(-1, 2)]


# ----------------------------------------------------------------------------- order and batching

@pytest.mark.parametrize("num_workers", WORKERS)
@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (4, False), (4, True), (13, False), (13, True)])
def test_same_batches_as_torch(num_workers, batch_size, drop_last):
    dataset = Squares(13 if batch_size != 4 else 10)
    ours = collect(DataLoader(dataset, batch_size=batch_size, drop_last=drop_last, num_workers=num_workers))
    assert_same_batches(ours, torch_batches(dataset, batch_size=batch_size, drop_last=drop_last))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_tensor_dataset_same_batches_as_torch(num_workers):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((11, 3)).astype(np.float32), rng.integers(0, 5, 11)
    ours = collect(DataLoader(TensorDataset(distrain.tensor(x), distrain.tensor(y)), batch_size=4,
                              num_workers=num_workers))
    reference = torch_batches(tud.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=4)
    assert_same_batches(ours, reference)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_no_batching(num_workers):
    dataset = Squares(5)
    ours = collect(DataLoader(dataset, batch_size=None, num_workers=num_workers))
    assert_same_batches(ours, torch_batches(dataset, batch_size=None))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_no_batching_of_numpy_scalars(num_workers):
    # torch's default_convert turns NumPy scalars (a TensorDataset row of a 1-d array) into Tensors
    x = np.arange(6, dtype=np.float64)
    ours = collect(DataLoader(TensorDataset(x), batch_size=None, num_workers=num_workers))
    reference = torch_batches(tud.TensorDataset(torch.tensor(x)), batch_size=None)
    assert_same_batches(ours, reference)


@pytest.mark.parametrize("batch_size,drop_last,n", [(1, False, 5), (3, False, 10), (3, True, 10), (5, True, 10),
                                                    (None, False, 4), (7, True, 3)])
def test_len_matches_torch(batch_size, drop_last, n):
    ours = DataLoader(Squares(n), batch_size=batch_size, drop_last=drop_last)
    reference = tud.DataLoader(Squares(n), batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(reference)
    assert len(collect(ours)) == len(ours)


def test_len_of_an_iterable_dataset_loader_is_a_type_error():
    with pytest.raises(TypeError):
        len(DataLoader(Stream(4), batch_size=2))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_custom_sampler_and_batch_sampler(num_workers):
    dataset = Squares(10)
    sampler = [9, 0, 5, 5, 2]
    assert_same_batches(collect(DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=num_workers)),
                        torch_batches(dataset, batch_size=2, sampler=sampler))
    batch_sampler = [[3, 1], [0], [7, 8, 9], [2, 2]]
    assert_same_batches(collect(DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers)),
                        torch_batches(dataset, batch_sampler=batch_sampler))
    ours = DataLoader(dataset, batch_sampler=BatchSampler(SequentialSampler(dataset), 3, True),
                      num_workers=num_workers)
    assert len(ours) == 3
    assert_same_batches(collect(ours), torch_batches(dataset, batch_size=3, drop_last=True))


def _numpy_collate(samples):
    """A user collate_fn: NumPy arrays (not Tensors), a dict, a Python int and a list of strings."""
    return {"x": np.stack([s[0] for s in samples]), "count": len(samples), "names": [s[2] for s in samples],
            "ids": np.array([s[1] for s in samples], np.int16)}


@pytest.mark.parametrize("num_workers", WORKERS)
def test_custom_collate_fn_keeps_numpy_arrays_and_dicts(num_workers):
    dataset = Squares(7)
    ours = collect(DataLoader(dataset, batch_size=3, collate_fn=_numpy_collate, num_workers=num_workers))
    assert_same_batches(ours, torch_batches(dataset, batch_size=3, collate_fn=_numpy_collate))
    assert ours[0][0] == "dict" and ours[0][1]["x"][0] == "array"


@pytest.mark.parametrize("num_workers", [0, 2])
def test_get_batch_fast_path_equals_per_sample_path(num_workers):
    rng = np.random.default_rng(2)
    dataset = TensorDataset(rng.standard_normal((23, 2, 3)).astype(np.float32), np.arange(23), rng.random(23) > 0.5)
    for ds in (dataset, Subset(dataset, list(range(22, -1, -2)))):
        fast = DataLoader(ds, batch_size=5, shuffle=True, seed=4, num_workers=num_workers)
        slow = DataLoader(ds, batch_size=5, shuffle=True, seed=4, num_workers=num_workers, collate_fn=default_collate)
        assert fast.fetcher.use_get_batch and not slow.fetcher.use_get_batch
        assert_same_batches(collect(fast), collect(slow))


# ----------------------------------------------------------------------------- seeds and randomness

def _orders(loader, epochs=1):
    return [[int(i) for b in loader for i in b[1].numpy()] for _ in range(epochs)]


def test_shuffle_with_seed_is_the_same_for_every_num_workers_and_run():
    reference = collect(DataLoader(Squares(17), batch_size=4, shuffle=True, seed=7))
    order = [int(i) for kind, b in reference for i in b[1][1]]
    assert sorted(order) == list(range(17)) and order != list(range(17))
    for num_workers in WORKERS:
        for run in range(2):
            loader = DataLoader(Squares(17), batch_size=4, shuffle=True, seed=7, num_workers=num_workers)
            assert_same_batches(collect(loader), reference, f"num_workers={num_workers}, run {run}")


def test_shuffle_different_seeds_differ_and_epochs_differ():
    first = _orders(DataLoader(Squares(30), batch_size=5, shuffle=True, seed=0), epochs=2)
    other = _orders(DataLoader(Squares(30), batch_size=5, shuffle=True, seed=1))
    assert first[0] != other[0]
    assert first[0] != first[1], "each epoch of a seeded loader draws a new order"
    assert sorted(first[1]) == list(range(30))


@pytest.mark.parametrize("seeded", [True, False])
def test_random_transforms_are_the_same_for_every_num_workers(seeded):
    def run(num_workers):
        if not seeded:
            distrain.manual_seed(42)
        loader = DataLoader(RandomDraws(14), batch_size=3, shuffle=True, num_workers=num_workers,
                            seed=5 if seeded else None)
        return [collect(loader) for _ in range(2)]  # two epochs: each with its own draws

    reference = run(0)
    python_draws = [v for kind, b in reference[0] for v in b["python"][1]]
    assert len(set(python_draws)) == len(python_draws), "samples must draw different numbers"
    assert [b[1]["numpy"][1].tolist() for b in reference[0]] != [b[1]["numpy"][1].tolist() for b in reference[1]]
    for num_workers in WORKERS[1:]:
        ours = run(num_workers)
        for epoch in range(2):
            assert_same_batches(ours[epoch], reference[epoch], f"num_workers={num_workers}, epoch {epoch}")


def _global_states():
    numpy_state = np.random.get_state()
    return (random.getstate(), numpy_state[0], numpy_state[1].tolist(), numpy_state[2:],
            distrain.get_rng_state()["state"])


@pytest.mark.parametrize("shuffle", [False, True])
def test_single_process_iteration_leaves_the_global_generators_alone(shuffle):
    loader = DataLoader(RandomDraws(9), batch_size=2, shuffle=shuffle, seed=3)
    distrain.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    before = _global_states()
    batches = collect(loader)
    assert len(batches) == 5
    assert _global_states() == before
    expected = (random.random(), np.random.rand(), float(distrain.rand(1).numpy()[0]))
    distrain.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    assert (random.random(), np.random.rand(), float(distrain.rand(1).numpy()[0])) == expected


def test_unseeded_iteration_leaves_python_and_numpy_generators_alone():
    random.seed(1)
    np.random.seed(1)
    before = _global_states()[:4]
    collect(DataLoader(RandomDraws(5), batch_size=2))
    assert _global_states()[:4] == before


# ----------------------------------------------------------------------------- IterableDataset

@pytest.mark.parametrize("batch_size,drop_last", [(3, False), (3, True), (5, False), (None, False), (1, False)])
def test_iterable_dataset_single_process_matches_torch(batch_size, drop_last):
    ours = collect(DataLoader(Stream(10), batch_size=batch_size, drop_last=drop_last))
    reference = torch_batches(TorchStream(10), batch_size=batch_size, drop_last=drop_last)
    assert_same_batches(ours, reference)


@pytest.mark.parametrize("num_workers", [1, 2, 3])
def test_iterable_dataset_sharded_by_worker_info_gives_every_sample_once(num_workers):
    batches = collect(DataLoader(Stream(11), batch_size=2, num_workers=num_workers))
    assert sorted(sample_ids(batches)) == list(range(11))


def test_iterable_dataset_with_workers_interleaves_like_torch():
    ours = collect(DataLoader(Stream(11), batch_size=2, num_workers=2))
    reference = torch_batches(TorchStream(11), batch_size=2, num_workers=2)
    assert_same_batches(ours, reference)


def test_iterable_dataset_without_sharding_repeats_per_worker():
    batches = collect(DataLoader(Stream(7, shard=False), batch_size=3, num_workers=2))
    assert sorted(sample_ids(batches)) == sorted(list(range(7)) * 2)


def test_worker_info_is_none_in_the_main_process():
    assert get_worker_info() is None
    collect(DataLoader(Stream(4), batch_size=2, num_workers=2))
    assert get_worker_info() is None


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterable_dataset_restarts_every_epoch(num_workers):
    loader = DataLoader(Stream(9), batch_size=2, num_workers=num_workers,
                        persistent_workers=num_workers > 0)
    for epoch in range(3):
        assert sorted(sample_ids(collect(loader))) == list(range(9)), f"epoch {epoch}"


# ----------------------------------------------------------------------------- workers

def test_persistent_workers_over_three_epochs_with_one_abandoned():
    def epochs(num_workers):
        loader = DataLoader(Squares(23), batch_size=3, shuffle=True, seed=11, num_workers=num_workers,
                            persistent_workers=num_workers > 0)
        first = collect(loader)
        iterator = iter(loader)
        abandoned = [collect([next(iterator)])[0], collect([next(iterator)])[0]]
        third = collect(loader)
        fourth = collect(loader)
        return loader, iterator, [first, abandoned, third, fourth]

    _, _, reference = epochs(0)
    loader, iterator, ours = epochs(2)
    try:
        for epoch, (a, e) in enumerate(zip(ours, reference)):
            assert_same_batches(a, e, f"epoch {epoch}")
        assert iter(loader).pool is iterator.pool, "persistent workers: one pool of processes for every epoch"
        assert next(iterator, None) is None, "an epoch superseded by a newer one is over"
        pids = [w.pid for w in iterator.workers]
        collect(loader)
        assert [w.pid for w in iter(loader).workers] == pids
        assert all(w.is_alive() for w in iterator.workers)
    finally:
        iterator.close()
    assert not any(w.is_alive() for w in iterator.workers)


def test_persistent_workers_draw_new_random_transforms_every_epoch():
    def epochs(num_workers):
        loader = DataLoader(RandomDraws(8), batch_size=4, shuffle=True, seed=2, num_workers=num_workers,
                            persistent_workers=num_workers > 0)
        try:
            return [collect(loader) for _ in range(3)]
        finally:
            if num_workers:
                iter(loader).close()

    reference = epochs(0)
    ours = epochs(2)
    for epoch in range(3):
        assert_same_batches(ours[epoch], reference[epoch], f"epoch {epoch}")


def _mebibytes(index):
    return np.full((1 << 19,), index, np.float64)  # 4 MiB per sample


class Big(Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, index):
        return _mebibytes(index), index


def test_a_batch_larger_than_a_slot_comes_through():
    loader = DataLoader(Big(), batch_size=2, num_workers=2)  # 8 MiB batches, 1 MiB slots to begin with
    iterator = iter(loader)
    try:
        first = next(iterator)
        assert max(iterator.pool.slots.size(slot) for slot in range(len(iterator.pool.slots))) >= 8 << 20
        batches = collect([first]) + collect(iterator)
    finally:
        iterator.close()
    assert len(batches) == 4
    for b, (kind, (x, ids)) in enumerate(batches):
        expected = [2 * b, 2 * b + 1] if b < 3 else [6]
        np.testing.assert_array_equal(ids[1], expected)
        assert x[1].shape == (len(expected), 1 << 19)
        np.testing.assert_array_equal(x[1], np.repeat(np.array(expected, np.float64)[:, None], 1 << 19, axis=1))


class BigStream(IterableDataset):
    def __iter__(self):
        info = get_worker_info()
        for i in range(info.id, 6, info.num_workers):
            yield _mebibytes(i)


def test_a_stream_batch_larger_than_a_slot_loses_nothing():
    batches = collect(DataLoader(BigStream(), batch_size=2, num_workers=2))
    ids = sorted(int(v) for kind, array in batches for v in array[:, 0])
    assert ids == list(range(6))


@pytest.mark.parametrize("num_workers,prefetch_factor", [(1, 1), (2, 1), (2, 4)])
def test_prefetch_factor(num_workers, prefetch_factor):
    dataset = Squares(20)
    loader = DataLoader(dataset, batch_size=2, num_workers=num_workers, prefetch_factor=prefetch_factor)
    assert loader.prefetch_factor == prefetch_factor
    iterator = iter(loader)
    try:
        first = collect([next(iterator)])
        pool = iterator.pool
        # all but the batch just taken are still ahead: a loader that kept fewer in flight fails here
        assert len(pool.in_flight) + len(pool.arrived) == num_workers * prefetch_factor - 1
        # one more slot than in flight, for the batch in hand, made with the others before the workers start
        assert len(pool.slots) == num_workers * prefetch_factor + 1
        batches, most_slots = first, 0
        for batch in iterator:
            batches += collect([batch])
            most_slots = max(most_slots, len(pool.slots))
        assert most_slots == num_workers * prefetch_factor + 1  # batches that are let go of are reused
    finally:
        iterator.close()
    assert_same_batches(batches, torch_batches(dataset, batch_size=2))
    assert DataLoader(dataset, num_workers=2).prefetch_factor == 2


class Rendezvous(Dataset):
    """Counts the __getitem__ calls running at once, across worker processes (shared counters).

    Samples 0 and 1 wait (up to 10 s) for each other: with two workers fetching in parallel both
    are running at once and neither waits long; a loader with only one batch in flight never
    runs them together.
    """

    def __init__(self, n):
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self.n, self.active, self.most = n, context.Value("i", 0), context.Value("i", 0)

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        import time

        with self.active.get_lock():
            self.active.value += 1
            self.most.value = max(self.most.value, self.active.value)
        deadline = time.monotonic() + 10
        while index < 2 and self.most.value < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        with self.active.get_lock():
            self.active.value -= 1
        return np.int64(index)


@pytest.mark.timeout(60)
def test_two_workers_fetch_in_parallel():
    dataset = Rendezvous(8)
    batches = [int(batch.numpy()[0]) for batch in DataLoader(dataset, batch_size=1, num_workers=2)]
    assert batches == list(range(8))
    assert dataset.most.value == 2, "both workers must have a batch in flight at once"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_workers_of_other_start_methods_stay_up_between_epochs(context):
    """A forkserver's workers are the server's children: they must watch the loader's process, not
    their parent, or they take the loader for dead (and an idle worker used to quit after 0.5 s)."""
    import time

    loader = DataLoader(Squares(10), batch_size=4, num_workers=2, persistent_workers=True,
                        multiprocessing_context=context)
    iterator = iter(loader)
    try:
        first = collect(iterator)
        time.sleep(1.5)  # idle workers, between epochs
        second = collect(loader)
    finally:
        iterator.close()
    expected = torch_batches(Squares(10), batch_size=4)
    assert_same_batches(first, expected)
    assert_same_batches(second, expected)


def test_worker_init_fn_runs_once_per_worker(tmp_path):
    log = tmp_path / "init.log"

    def init(worker_id):
        info = get_worker_info()
        with open(log, "a") as f:
            f.write(f"{worker_id} {info.id} {info.num_workers} {os.getpid()}\n")

    loader = DataLoader(Squares(12), batch_size=2, num_workers=3, worker_init_fn=init, persistent_workers=True)
    iterator = iter(loader)
    try:
        collect(iterator)
        collect(loader)  # a second epoch of the same workers: no new calls
        pids = sorted(w.pid for w in iterator.workers)
    finally:
        iterator.close()
    lines = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(line[0]) for line in lines) == [0, 1, 2]
    assert all(line[0] == line[1] and line[2] == "3" for line in lines)
    assert sorted(int(line[3]) for line in lines) == pids
    assert os.getpid() not in pids


# ----------------------------------------------------------------------------- arguments

BAD_ARGUMENTS = [
    (lambda: Squares(4), dict(num_workers=-1)),
    (lambda: Squares(4), dict(prefetch_factor=2)),
    (lambda: Squares(4), dict(persistent_workers=True)),
    (lambda: Squares(4), dict(sampler=[0, 1], shuffle=True)),
    (lambda: Squares(4), dict(batch_sampler=[[0, 1]], batch_size=2)),
    (lambda: Squares(4), dict(batch_sampler=[[0, 1]], shuffle=True)),
    (lambda: Squares(4), dict(batch_sampler=[[0, 1]], drop_last=True)),
    (lambda: Squares(4), dict(batch_sampler=[[0, 1]], sampler=[0])),
    (lambda: Squares(4), dict(batch_size=None, drop_last=True)),
    (lambda: Squares(4), dict(timeout=-1)),
    (lambda: Stream(4), dict(shuffle=True)),
    (lambda: Stream(4), dict(sampler=[0, 1])),
    (lambda: Stream(4), dict(batch_sampler=[[0, 1]])),
]


@pytest.mark.parametrize("make,kwargs", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error_like_torch(make, kwargs):
    with pytest.raises(ValueError):
        DataLoader(make(), **kwargs)
    torch_dataset = TorchStream(4) if isinstance(make(), IterableDataset) else make()
    with pytest.raises(ValueError):
        tud.DataLoader(torch_dataset, **kwargs)


def test_seed_and_generator_together_raise():
    with pytest.raises(ValueError, match="seed"):
        DataLoader(Squares(4), shuffle=True, seed=0, generator=distrain.Generator(seed=0))
