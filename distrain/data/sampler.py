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
        batch = []
        for index in self.sampler:
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

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = Generator(seed=self.seed + self.epoch).permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding > 0:
                repeats = -(-padding // max(len(indices), 1))
                indices += (indices * repeats)[:padding]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Use the shuffle of this epoch (the same on every rank)."""
        self.epoch = epoch
