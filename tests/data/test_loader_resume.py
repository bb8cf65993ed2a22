"""DataLoader.state_dict / load_state_dict: a pass resumed mid-epoch is the uninterrupted one, bit for bit.

The oracle is the uninterrupted run of the same loader. The resumed loader is built from new
objects (dataset, sampler, loader), after distrain's and NumPy's global generators were
scrambled and distrain's restored from the "checkpoint", as a restarted trainer would, and
the state travels through distrain.save and distrain.load. The dataset draws random numbers
in __getitem__, so a batch fetched with the wrong per-batch seed shows. For a change of
world size the oracle is the epoch's global order, read off the old ranks' uninterrupted
passes (rank r's i-th index is position i * world + r).
"""
import numpy as np
import pytest

import distrain
from distrain.data import BatchSampler, DataLoader, Dataset, DistributedSampler, IterableDataset, RandomSampler
from distrain.errors import ArgumentError

from .oracle import assert_same_batches, collect

SIZE, BATCH = 42, 4
VARIANTS = [(0, False), (2, False), (2, True)]  # (num_workers, persistent_workers)


class Draws(Dataset):
    """Sample i: i and random numbers from NumPy's global generator and distrain's; `reads` lists what was read
    in this process."""

    def __init__(self, n=SIZE):
        self.n = n
        self.reads = []

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        self.reads.append(index)
        return {"index": index, "numpy": np.random.rand(2), "distrain": distrain.rand(2)}


def build(kind, workers=0, persistent=False, rank=1, world=2, drop_last=False, dataset=None):
    """A loader shuffled by its own seed ("seed") or by a DistributedSampler ("distributed"), from new objects."""
    dataset = Draws() if dataset is None else dataset
    if kind == "seed":
        return DataLoader(dataset, batch_size=BATCH, shuffle=True, seed=7, num_workers=workers,
                          persistent_workers=persistent, drop_last=drop_last)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=3)
    return DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=workers, persistent_workers=persistent,
                      drop_last=drop_last)


def start_epoch(loader, epoch):
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)


def uninterrupted(kind, epochs=3, **options):
    distrain.manual_seed(0)
    loader = build(kind, **options)
    passes = []
    for epoch in range(epochs):
        start_epoch(loader, epoch)
        passes.append(collect(loader))
    return passes


def through_checkpoint(state, tmp_path):
    path = tmp_path / "checkpoint.dt"
    distrain.save({"loader": state, "rng": distrain.get_rng_state()}, path)
    saved = distrain.load(path)
    return saved["loader"], saved["rng"]


def restart(saved_rng):
    """What a new process has: other global generator states, then distrain's restored by the trainer."""
    distrain.manual_seed(12345)
    np.random.seed(999)
    distrain.set_rng_state(saved_rng)


def interrupted(kind, taken, tmp_path, epoch=0, **options):
    """Run the epochs before `epoch`, take `taken` batches of it and return the checkpointed state
    (the loader is then dropped)."""
    distrain.manual_seed(0)
    loader = build(kind, **options)
    for earlier in range(epoch):
        start_epoch(loader, earlier)
        collect(loader)
    start_epoch(loader, epoch)
    iterator = iter(loader)
    for _ in range(taken):
        next(iterator)
    state = loader.state_dict()
    del iterator, loader
    return through_checkpoint(state, tmp_path)


@pytest.mark.parametrize("kind", ["seed", "distributed"])
@pytest.mark.parametrize("workers,persistent", VARIANTS)
@pytest.mark.parametrize("taken", [0, 3])
def test_the_rest_of_the_epoch_and_the_next_equal_the_uninterrupted_run(kind, workers, persistent, taken, tmp_path):
    """Interrupted in epoch 1 (the generators had moved on) after `taken` batches; with workers, more
    than that had been read ahead, and with taken=0 the pass had begun but nothing was taken."""
    expected = uninterrupted(kind, workers=workers, persistent=persistent)
    state, rng = interrupted(kind, taken, tmp_path, epoch=1, workers=workers, persistent=persistent)
    assert state["batches_taken"] == taken
    if kind == "distributed":
        assert state["sampler"]["epoch"] == 1 and state["sampler"]["offset"] == taken * BATCH * 2
    restart(rng)
    loader = build(kind, workers=workers, persistent=persistent)
    loader.load_state_dict(state)
    start_epoch(loader, 1)
    assert_same_batches(collect(loader), expected[1][taken:], "resumed epoch 1")
    start_epoch(loader, 2)
    assert_same_batches(collect(loader), expected[2], "epoch 2 after the resumed one")


@pytest.mark.parametrize("kind", ["seed", "distributed"])
def test_a_resumed_pass_reads_only_the_batches_it_yields(kind, tmp_path):
    state, rng = interrupted(kind, 4, tmp_path)
    restart(rng)
    dataset = Draws()
    loader = build(kind, dataset=dataset)
    loader.load_state_dict(state)
    start_epoch(loader, 0)
    yielded = [int(i) for batch in loader for i in batch["index"].numpy()]
    assert dataset.reads == yielded
    assert len(yielded) == len(build(kind).sampler) - 4 * BATCH


def test_a_state_taken_again_after_a_resume_resumes_too(tmp_path):
    """Two interruptions in one epoch: batch numbers and the sampler's offset go on from the first resume."""
    expected = uninterrupted("distributed", workers=2)
    state, rng = interrupted("distributed", 2, tmp_path, workers=2)
    restart(rng)
    loader = build("distributed", workers=2)
    loader.load_state_dict(state)
    iterator = iter(loader)
    next(iterator), next(iterator)
    again, rng = through_checkpoint(loader.state_dict(), tmp_path)
    assert again["batches_taken"] == 4 and again["sampler"]["offset"] == 4 * BATCH * 2
    del iterator, loader
    restart(rng)
    loader = build("distributed", workers=2)
    loader.load_state_dict(again)
    assert_same_batches(collect(loader), expected[0][4:], "resumed twice")


@pytest.mark.parametrize("kind", ["seed", "distributed"])
def test_a_state_before_any_pass_starts_the_first_epoch(kind, tmp_path):
    expected = uninterrupted(kind)
    distrain.manual_seed(0)
    state, rng = through_checkpoint(build(kind).state_dict(), tmp_path)
    assert state["base_seed"] is None and state["batches_taken"] == 0
    restart(rng)
    loader = build(kind)
    if loader.generator is not None:
        loader.generator.integers(0, 10, (5,), np.int64)  # moved on: the load must put it back
    loader.load_state_dict(state)
    for epoch in range(2):
        start_epoch(loader, epoch)
        assert_same_batches(collect(loader), expected[epoch], f"epoch {epoch}")


@pytest.mark.parametrize("kind", ["seed", "distributed"])
@pytest.mark.parametrize("ended", [False, True], ids=["last-batch-taken", "stop-iteration-raised"])
def test_a_state_at_the_end_of_an_epoch_resumes_an_empty_pass_then_the_next_epoch(kind, ended, tmp_path):
    expected = uninterrupted(kind, workers=2, drop_last=True)
    distrain.manual_seed(0)
    loader = build(kind, workers=2, drop_last=True)
    start_epoch(loader, 0)
    iterator = iter(loader)
    for _ in range(len(loader)):
        next(iterator)
    if ended:
        assert next(iterator, None) is None
    state, rng = through_checkpoint(loader.state_dict(), tmp_path)
    assert state["batches_taken"] == len(loader)
    del iterator, loader
    restart(rng)
    loader = build(kind, workers=2, drop_last=True)
    loader.load_state_dict(state)
    start_epoch(loader, 0)
    assert collect(loader) == []
    start_epoch(loader, 1)
    assert_same_batches(collect(loader), expected[1], "the epoch after")


def test_state_dict_counts_batches_taken_not_read_ahead():
    distrain.manual_seed(0)
    loader = build("seed", workers=2)
    iterator = iter(loader)
    next(iterator)
    assert loader.state_dict()["batches_taken"] == 1
    assert loader.state_dict()["base_seed"] == iterator.progress.base_seed


def test_a_loaded_state_is_what_state_dict_gives_until_the_next_pass(tmp_path):
    state, _ = interrupted("distributed", 2, tmp_path)
    loader = build("distributed")
    loader.load_state_dict(state)
    assert loader.state_dict() == state


# ----------------------------------------------------------------------------- world size changes

def global_order(epoch_passes):
    """The epoch's global order from every old rank's uninterrupted pass: rank r's i-th is position i * world + r."""
    world = len(epoch_passes)
    order = [None] * (len(epoch_passes[0]) * world)
    for rank, indices in enumerate(epoch_passes):
        order[rank::world] = indices
    return order


def indices_of(batches):
    return [int(i) for _, value in batches for i in value["index"][1]]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("new_world", [3, 1])
def test_a_new_world_size_splits_the_positions_not_consumed(drop_last, new_world, tmp_path):
    # 41 samples: the old world pads its epoch; 42 with drop_last, so that the old world cuts nothing
    # (the oracle reads the order off its passes) and 3 new ranks cut 2
    old_world, taken, size = 2, 2, 42 if drop_last else 41
    full = [indices_of(collect(DataLoader(Draws(size), batch_size=BATCH,
                                          sampler=DistributedSampler(Draws(size), old_world, rank, seed=3,
                                                                     drop_last=drop_last))))
            for rank in range(old_world)]
    order = global_order(full)[:size]  # without the old world's padding
    consumed = taken * BATCH * old_world
    states = []
    for rank in range(old_world):
        loader = DataLoader(Draws(size), batch_size=BATCH,
                            sampler=DistributedSampler(Draws(size), old_world, rank, seed=3, drop_last=drop_last))
        iterator = iter(loader)
        for _ in range(taken):
            next(iterator)
        states.append(loader.state_dict())
    assert states[0]["sampler"] == states[1]["sampler"], "every old rank records the same global position"
    assert states[0]["sampler"]["offset"] == consumed
    remaining = order[consumed:]
    if drop_last:
        remaining = remaining[:len(remaining) - len(remaining) % new_world]
    else:
        remaining += order[:-len(remaining) % new_world]  # the documented padding: the epoch's first positions
    new = []
    for rank in range(new_world):
        loader = DataLoader(Draws(size), batch_size=BATCH,
                            sampler=DistributedSampler(Draws(size), new_world, rank, seed=3, drop_last=drop_last))
        loader.load_state_dict(through_checkpoint(states[rank % old_world], tmp_path)[0])
        mine = indices_of(collect(loader))
        assert mine == remaining[rank::new_world], f"new rank {rank}"
        new += mine
    # every sample once, beyond the padding (the epoch's first positions again) or the tail cut
    tail = (size - consumed) % new_world
    if drop_last:
        assert sorted(order[:consumed] + new + order[size - tail:]) == list(range(size))
    else:
        assert sorted(order[:consumed] + new) == sorted(list(range(size)) + order[:-(size - consumed) % new_world])


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("size,world", [(10, 3), (12, 3), (7, 4), (2, 3)])
def test_a_sampler_resumed_with_the_same_world_size_gives_each_rank_the_rest_of_its_share(size, world, drop_last):
    for epoch in (0, 5):
        for rank in range(world):
            original = DistributedSampler(range(size), world, rank, seed=1, drop_last=drop_last)
            original.set_epoch(epoch)
            share = list(original)
            for taken in range(len(share) + 1):
                resumed = DistributedSampler(range(size), world, rank, seed=0, drop_last=drop_last)
                resumed.load_state_dict(original.state_dict(taken))
                assert resumed.epoch == epoch and resumed.seed == 1
                assert list(resumed) == share[taken:], f"rank {rank} after {taken}"
                assert list(resumed) == share, "the pass after the resumed one is a whole epoch"


# ----------------------------------------------------------------------------- draw order and numbering

def test_without_batching_the_order_is_the_same_for_every_num_workers():
    """batch_size=None: the base seed is drawn before the order with and without workers."""
    def batches(workers):
        return collect(DataLoader(Draws(12), batch_size=None, shuffle=True, seed=2, num_workers=workers))

    assert_same_batches(batches(0), batches(2))


class FailsAt(Draws):
    def __getitem__(self, index):
        if index == 5:
            raise KeyError("sample 5 is broken")
        return super().__getitem__(index)


def test_a_failed_batch_keeps_its_number_without_workers():
    """Without workers, the batch after a failed one is numbered (and so seeded) as with workers."""
    def batches(workers):
        got, iterator = [], iter(DataLoader(FailsAt(16), batch_size=BATCH, num_workers=workers, seed=1))
        while True:
            try:
                got.append(next(iterator))
            except StopIteration:
                return collect(got)
            except (KeyError, distrain.data.WorkerError):
                got.append("failed")

    assert_same_batches(batches(0), batches(2))


# ----------------------------------------------------------------------------- states that do not fit

def checked_state(tmp_path):
    return interrupted("seed", 2, tmp_path)[0]


@pytest.mark.parametrize("change,needle", [
    (lambda state: ["not", "a", "dict"], "got list"),
    (lambda state: {k: v for k, v in state.items() if k != "base_seed"}, "missing keys ['base_seed']"),
    (lambda state: {**state, "extra": 1}, "unexpected keys ['extra']"),
    (lambda state: {**state, "batch_size": 8}, "batch_size=8, this one has batch_size=4"),
    (lambda state: {**state, "dataset_length": 50}, "dataset_length=50, this one has dataset_length=42"),
    (lambda state: {**state, "sampler_type": "DistributedSampler"}, "sampler_type='DistributedSampler'"),
    (lambda state: {**state, "batches_taken": 99}, "batches_taken=99 is out of range"),
    (lambda state: {**state, "batches_taken": "2"}, "'batches_taken' should be int"),
    (lambda state: {**state, "generator": None}, "had none for 'generator'"),
    (lambda state: {**state, "generator": {"device": "cpu", "seed": 1, "state": {"bit_generator": "MT19937"}}},
     "'generator' is not a state of this generator"),
    (lambda state: {**state, "sampler": {"offset": 3}}, "'sampler' is {'offset': 3}"),
])
def test_a_state_that_does_not_fit_is_refused_by_name_and_changes_nothing(change, needle, tmp_path):
    loader = build("seed")
    before = loader.generator.get_state()
    with pytest.raises(ArgumentError) as raised:
        loader.load_state_dict(change(checked_state(tmp_path)))
    assert isinstance(raised.value, ValueError)
    assert needle in str(raised.value)
    assert loader.generator.get_state() == before and loader.state_dict()["base_seed"] is None


def test_a_distributed_state_that_does_not_fit_is_refused(tmp_path):
    state, _ = interrupted("distributed", 2, tmp_path)
    loader = build("distributed")
    with pytest.raises(ArgumentError, match="shuffle=True, this sampler has shuffle=False"):
        DistributedSampler(Draws(), 2, 0, shuffle=False).load_state_dict(state["sampler"])
    with pytest.raises(ArgumentError, match="offset 43"):
        loader.sampler.load_state_dict({**state["sampler"], "offset": 43})
    with pytest.raises(ArgumentError, match="the state was saved over 42 samples, this sampler's dataset has 10"):
        DistributedSampler(Draws(10), 2, 0).load_state_dict(state["sampler"])
    with pytest.raises(ArgumentError, match="had none for 'generator'"):
        DataLoader(Draws(), batch_size=BATCH, sampler=DistributedSampler(Draws(), 2, 1, seed=3),
                   seed=1).load_state_dict(state)


def test_set_epoch_to_another_epoch_than_the_loaded_position_is_refused(tmp_path):
    state, _ = interrupted("distributed", 2, tmp_path)
    loader = build("distributed")
    loader.load_state_dict(state)
    with pytest.raises(ArgumentError, match=r"set_epoch\(1\).*inside epoch 0"):
        loader.sampler.set_epoch(1)
    loader.sampler.set_epoch(0)


class Stream(IterableDataset):
    def __iter__(self):
        return iter(range(8))


@pytest.mark.parametrize("build_loader,needle", [
    (lambda: DataLoader(Draws(), batch_size=BATCH, shuffle=True), "shuffles with distrain's global generator"),
    (lambda: DataLoader(Draws(), sampler=RandomSampler(Draws()), batch_size=BATCH), "give the DataLoader seed="),
    (lambda: DataLoader(Stream(), batch_size=BATCH), "IterableDataset"),
])
def test_a_loader_that_cannot_resume_exactly_says_why(build_loader, needle):
    loader = build_loader()
    with pytest.raises(ArgumentError, match=needle):
        loader.state_dict()
    with pytest.raises(ArgumentError, match=needle):
        loader.load_state_dict({})


def test_a_sampler_with_its_own_generator_is_redrawn(tmp_path):
    """RandomSampler(generator=g), g not the loader's: its state at the pass's start is kept too."""
    def build_with_own():
        return DataLoader(Draws(), batch_size=BATCH, sampler=RandomSampler(Draws(), generator=distrain.Generator(seed=9)))

    distrain.manual_seed(0)
    expected = collect(build_with_own())
    distrain.manual_seed(0)
    loader = build_with_own()
    iterator = iter(loader)
    next(iterator), next(iterator)
    state, rng = through_checkpoint(loader.state_dict(), tmp_path)
    assert state["sampler_generator"] is not None and state["generator"] is None
    restart(rng)
    loader = build_with_own()
    loader.load_state_dict(state)
    assert_same_batches(collect(loader), expected[2:])


def test_a_user_batch_sampler_resumes_by_skipping(tmp_path):
    def build_batched():
        return DataLoader(Draws(), batch_sampler=BatchSampler(RandomSampler(Draws(), generator=distrain.Generator(seed=4)),
                                                              5, False))

    distrain.manual_seed(0)
    expected = collect(build_batched())
    distrain.manual_seed(0)
    loader = build_batched()
    iterator = iter(loader)
    next(iterator)
    state, rng = through_checkpoint(loader.state_dict(), tmp_path)
    restart(rng)
    loader = build_batched()
    loader.load_state_dict(state)
    assert_same_batches(collect(loader), expected[1:])
