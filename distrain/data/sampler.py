"""Samplers: which sample indices a DataLoader reads, in which order, and in which batches.

As in torch.utils.data: `SequentialSampler`, `RandomSampler`, `SubsetRandomSampler`,
`BatchSampler`, and `DistributedSampler`, which gives each of N data-parallel ranks its
own 1/N of the (shuffled) indices. Shuffling draws from a `distrain.Generator`, so the
order is fixed by a seed; the DataLoader's worker processes never draw an order, which is
why it does not depend on the number of workers.
"""
from __future__ import annotations

import math
import os

import numpy

from ..engine.random import Generator, default_generator
from ..errors import ArgumentError


def _fresh_generator(generator):
    """The generator to shuffle with: the given one, else one seeded from distrain's global generator."""
    if generator is not None:
        return generator
    return Generator(seed=int(default_generator().integers(0, 2 ** 62, (), numpy.int64)))


class Sampler:
    """Base class: an iterable of indices (map-style datasets) with a length."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation each epoch (or, with replacement, num_samples independent draws)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples should be a positive integer, got {num_samples!r}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        generator = _fresh_generator(self.generator)
        if self.replacement:
            return iter(generator.integers(0, n, (self.num_samples,), numpy.int64).tolist())
        rounds = [generator.permutation(n) for _ in range(-(-self.num_samples // n))] if n else []
        return iter(numpy.concatenate(rounds)[:self.num_samples].tolist() if rounds else [])

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each epoch."""

    def __init__(self, indices, generator=None):
        self.indices = list(indices)
        self.generator = generator

    def __iter__(self):
        order = _fresh_generator(self.generator).permutation(len(self.indices))
        return iter([self.indices[i] for i in order])

    def __len__(self):
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups another sampler's indices into lists of batch_size (the last may be short unless drop_last)."""

    def __init__(self, sampler, batch_size, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer, got {batch_size!r}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        # The sampler's pass begins now, not at the first batch: a DataLoader draws its epoch's
        # base seed and then the order, in that order whatever num_workers is, and a
        # DistributedSampler's position (state_dict) belongs to the pass that began last.
        return self._batches(iter(self.sampler))

    def _batches(self, indices):
        batch = []
        for index in indices:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return -(-len(self.sampler) // self.batch_size)


def _distributed_defaults(num_replicas, rank):
    """World size and rank: given, else the distributed context's, else the launcher's environment."""
    if num_replicas is None or rank is None:
        try:
            from .. import distributed  # the distributed context (when present and initialised)

            if distributed.is_initialized():
                num_replicas = distributed.get_world_size() if num_replicas is None else num_replicas
                rank = distributed.get_rank() if rank is None else rank
        except ImportError:
            pass
    if num_replicas is None and "WORLD_SIZE" in os.environ:
        num_replicas = int(os.environ["WORLD_SIZE"])
    if rank is None and "RANK" in os.environ:
        rank = int(os.environ["RANK"])
    if num_replicas is None or rank is None:
        raise RuntimeError("DistributedSampler: no distributed context to take num_replicas and rank from; "
                           "initialise distrain.distributed, run under distrain.launch, or pass both explicitly")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
    return num_replicas, rank


class DistributedSampler(Sampler):
    """Each rank's share of the dataset: rank r takes indices r, r + N, r + 2N, ... of one common order.

    The order is a permutation seeded by `seed + epoch` (identical on every rank), so call
    `set_epoch(epoch)` at the start of each epoch or every epoch repeats the same shuffle.
    Without drop_last the order is padded by repeating its start until it divides evenly,
    so every rank gets the same number of samples (uneven shares would make ranks wait
    for each other in the gradient allreduce, i.e. hang); with drop_last the tail is cut.

    Resuming mid-epoch. Call the epoch's order G (n positions). A pass starts at a global
    offset, 0 unless resumed: the positions G[offset:] are padded with G's first entries to a
    multiple of N (cut instead, with drop_last) and rank r takes every N-th from r. Ranks move
    in lockstep, so once each has taken c samples the first c * N positions after the offset
    are consumed: `state_dict(c)` records offset + c * N (at most n) with the epoch, seed and
    N, and `load_state_dict` makes the next pass start there, whatever this job's N is. With
    the same N every rank then gets exactly the indices it would have had next without the
    interruption; with another N the new ranks split the positions not consumed yet by the
    same rule, so no sample is lost or taken twice except for the padding that rule adds (or
    the tail it cuts). Later passes are whole epochs. A DataLoader computes c for you:
    `DataLoader.state_dict()` holds this state.

    Example::

        >>> sampler = DistributedSampler(range(100), num_replicas=2, rank=0, seed=0)
        >>> sampler.set_epoch(3)
        >>> order = iter(sampler)
        >>> first = [next(order) for _ in range(5)]          # every rank took 5: 10 positions consumed
        >>> state = sampler.state_dict(samples_taken=5)
        >>> resumed = DistributedSampler(range(100), num_replicas=3, rank=0)
        >>> resumed.load_state_dict(state)                  # epoch 3, seed 0, offset 10
        >>> len(list(resumed))                              # positions 10, 13, ..., 97 of epoch 3's order
        30
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        self.num_replicas, self.rank = _distributed_defaults(num_replicas, rank)
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas:
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self._resume_offset = 0  # where the next pass starts (load_state_dict)
        self._last_pass = None  # (epoch, seed, offset, length) of the pass that began last

    def __iter__(self):
        n = len(self.dataset)
        order = Generator(seed=self.seed + self.epoch).permutation(n).tolist() if self.shuffle else list(range(n))
        offset, self._resume_offset = self._resume_offset, 0
        remaining = order[offset:]
        if self.drop_last:
            del remaining[len(remaining) - len(remaining) % self.num_replicas:]
        else:
            padding = -len(remaining) % self.num_replicas
            if padding:
                remaining += (order * -(-padding // len(order)))[:padding]
        mine = remaining[self.rank::self.num_replicas]
        self._last_pass = (self.epoch, self.seed, offset, len(mine))
        return iter(mine)

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Use the shuffle of this epoch (the same on every rank)."""
        if self._resume_offset and epoch != self.epoch:
            raise ArgumentError(
                f"DistributedSampler.set_epoch({epoch}): this sampler was loaded with a position inside epoch "
                f"{self.epoch} that no pass has used yet; iterate epoch {self.epoch} first (call set_epoch({self.epoch}), "
                "the epoch your checkpoint was taken in) or build a new sampler to start afresh")
        self.epoch = epoch

    def state_dict(self, samples_taken=None):
        """Where this sampler stands, as plain values (see the class docstring for the rule).

        samples_taken: how many samples this rank has taken from the pass that began last;
        None: describe the start of the next pass instead.
        """
        n = len(self.dataset)
        if samples_taken is None:
            epoch, seed, offset = self.epoch, self.seed, self._resume_offset
        elif self._last_pass is None:
            raise ArgumentError(f"DistributedSampler.state_dict(samples_taken={samples_taken}): no pass over the "
                                "sampler has begun; give samples_taken=None for the start of the next one")
        elif isinstance(samples_taken, bool) or not isinstance(samples_taken, int) or samples_taken < 0:
            raise ArgumentError(f"DistributedSampler.state_dict: samples_taken must be a non-negative integer, "
                                f"got {samples_taken!r}")
        else:
            epoch, seed, start, length = self._last_pass
            offset = min(start + min(samples_taken, length) * self.num_replicas, n)
        return {"epoch": int(epoch), "seed": int(seed), "num_replicas": self.num_replicas, "shuffle": bool(self.shuffle),
                "dataset_length": n, "offset": int(offset)}

    def load_state_dict(self, state):
        """Take the epoch and seed of `state`; the next pass starts at its offset (any num_replicas)."""
        expected = {"epoch": int, "seed": int, "num_replicas": int, "shuffle": bool, "dataset_length": int,
                    "offset": int}
        check_state("DistributedSampler", state, expected)
        n = len(self.dataset)
        if state["shuffle"] != bool(self.shuffle):
            raise ArgumentError(f"DistributedSampler.load_state_dict: the state was saved with shuffle={state['shuffle']}, "
                                f"this sampler has shuffle={bool(self.shuffle)}; build it as the saved run did")
        if state["dataset_length"] != n:
            raise ArgumentError(f"DistributedSampler.load_state_dict: the state was saved over {state['dataset_length']} "
                                f"samples, this sampler's dataset has {n}; resume with the same dataset")
        if not 0 <= state["offset"] <= n or state["epoch"] < 0 or state["num_replicas"] < 1:
            raise ArgumentError(f"DistributedSampler.load_state_dict: offset {state['offset']} (0..{n}), epoch "
                                f"{state['epoch']} (>= 0) or num_replicas {state['num_replicas']} (>= 1) out of range")
        self.epoch, self.seed, self._resume_offset = state["epoch"], state["seed"], state["offset"]


def check_state(owner, state, expected):
    """`state` is a dict with exactly the keys of `expected` (name -> a type or a tuple of types), each of its type.

    What a state_dict from another kind of object, or a damaged one, fails on first: the
    error names the keys that are missing, unexpected or of the wrong type.
    """
    if not isinstance(state, dict):
        raise ArgumentError(f"{owner}.load_state_dict expects the dict that {owner}.state_dict() returned, "
                            f"got {type(state).__name__}")
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ArgumentError(f"{owner}.load_state_dict: not a {owner} state (missing keys {missing}, unexpected keys "
                            f"{unexpected}); give it what {owner}.state_dict() returned")
    for key, kinds in expected.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        value = state[key]
        if not any(isinstance(value, kind) and (kind is bool or not isinstance(value, bool)) for kind in kinds):
            names = " or ".join("None" if kind is type(None) else kind.__name__ for kind in kinds)
            raise ArgumentError(f"{owner}.load_state_dict: {key!r} should be {names}, got {value!r}")
