"""DataLoader: batches from a dataset, read ahead by worker processes.

With num_workers=0 each batch is fetched in this process when it is asked for. With
workers, a `WorkerPool` (worker_pool.py, NOTE [ Loader worker protocol ]) fills
shared-memory slots ahead of the loop and the iterator here decides the order: which
batch of indices goes to which worker, and which batch is yielded next.
"""
from __future__ import annotations

import contextlib
import itertools

import numpy

from ..engine import backend
from ..engine.random import Generator, default_generator
from . import loader_state
from .collate import convert_sample, default_collate
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler
from .worker import END, Fetcher, SampleError, batch_randomness, batch_seed, batches_draw_random_numbers
from .worker_pool import WorkerError, WorkerPool

__all__ = ["DataLoader", "WorkerError"]

_NO_RANDOMNESS = contextlib.nullcontext()


class DataLoader:
    """Iterate over a dataset in batches, optionally reading ahead in worker processes.

    Follows torch.utils.data.DataLoader (dataset, batch_size=1, shuffle, sampler,
    batch_sampler, num_workers, collate_fn, pin_memory, drop_last, timeout,
    worker_init_fn, multiprocessing_context, generator, prefetch_factor,
    persistent_workers), plus:

    - seed: shorthand for generator=distrain.Generator(seed=seed). The same seed gives the
      same sample order and the same random transforms whatever num_workers is.
    - device: "cuda[:N]" puts batches on that GPU, copied through pinned host memory on a
      side stream so that the copy of the next batch overlaps the current step.

    With num_workers > 0 a CPU batch is a view of shared memory that stays valid for as long
    as you keep it: its slot is reused only once nothing of the batch is referenced any more
    (NOTE [ Slot leases ] in shared_slots.py). With persistent_workers, the workers live as
    long as the DataLoader: dropping it stops them at once. Workers compute on one thread
    (NumPy's BLAS, distrain's own; NOTE [ One thread per loader worker ]), as PyTorch's do;
    a worker_init_fn may raise that.

    Exact resume: `state_dict()` records where the current (or last) pass stands and
    `load_state_dict(state)`, on a new loader built the same way, makes its next `iter()`
    continue that pass: the same remaining batches, random transforms included, bit for bit,
    whatever num_workers is; skipped batches are not read. The pass after it is an ordinary
    new one. A pass whose batches were all taken resumes as an empty pass, so the epoch a
    checkpoint belongs to is the one the state was taken in. NOTE [ Resuming a pass ] in
    loader_state.py says how.

    Example::

        >>> loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, num_workers=2, seed=0)
        >>> for x_batch, y_batch in loader:
        ...     loss = loss_fn(model(x_batch), y_batch)
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 seed=None, device=None):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers option should be a non-negative integer, got {num_workers!r}")
        if timeout < 0:
            raise ValueError(f"timeout option should be non-negative, got {timeout}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing; "
                             "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None")
        if prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"prefetch_factor option should be a positive integer, got {prefetch_factor}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: give either seed or generator, not both")
        self.dataset = dataset
        self.is_stream = isinstance(dataset, IterableDataset)
        if self.is_stream and (shuffle or sampler is not None or batch_sampler is not None):
            raise ValueError("DataLoader with an IterableDataset: the dataset decides the order, so shuffle, "
                             "sampler and batch_sampler must not be given")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        self.generator = Generator(seed=seed) if seed is not None else generator
        if batch_sampler is not None:
            batch_size, drop_last = None, False
        elif not self.is_stream:
            if sampler is None:
                sampler = RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
            if batch_size is not None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.persistent_workers = persistent_workers
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.auto_collation = batch_sampler is not None or (self.is_stream and batch_size is not None)
        self.collate_fn = collate_fn or (default_collate if self.auto_collation else convert_sample)
        self.fetcher = Fetcher(dataset, self.is_stream, self.auto_collation, self.collate_fn,
                               collate_fn is None and self.auto_collation and hasattr(dataset, "get_batch"),
                               batch_size, drop_last, batches_draw_random_numbers(dataset, collate_fn))
        self.device = backend.Device(device) if device is not None else None
        self.pin_memory = pin_memory
        self._pool = None  # the persistent workers
        self._progress = None  # the PassProgress of the pass that began last (loader_state.py)
        self._resume = None  # a loaded state whose pass the next iter() continues

    def __len__(self):
        if self.is_stream:
            raise TypeError("a DataLoader over an IterableDataset has no length")
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)

    def _index_batches(self):
        """The epoch's batches of indices (a single index when not batching)."""
        if self.is_stream:
            return itertools.repeat(None)
        return iter(self.batch_sampler) if self.batch_sampler is not None else iter(self.sampler)

    def _new_base_seed(self):
        return int((self.generator or default_generator()).integers(0, 2 ** 62, (), numpy.int64))

    def __iter__(self):
        progress, batches = loader_state.begin_pass(self)
        if self.num_workers == 0:
            return _SingleProcessIterator(self, progress, batches)
        pool = self._pool if self.persistent_workers else None
        if pool is None or pool.closed:
            pool = WorkerPool(self.dataset, self.fetcher, self.num_workers, self.prefetch_factor,
                              self.worker_init_fn, self.multiprocessing_context, self.timeout, progress.base_seed)
            if self.persistent_workers:
                self._pool = pool  # the pool holds nothing of ours: dropping the loader stops it at once
        return _WorkerPoolIterator(self, pool, progress, batches, owns_pool=not self.persistent_workers)

    def state_dict(self):
        """Where the current (or last) pass over the data stands, as plain values for `distrain.save`.

        Keys: batch_size, drop_last, dataset_length and sampler_type (what the loader was
        built with, checked on load); base_seed (None before any pass) and batches_taken
        (batches handed to the user in that pass); generator and sampler_generator (the
        states of the loader's generator and of a shuffling sampler's own generator when the
        pass began, None when there is none); sampler (a DistributedSampler's state_dict at
        the position reached, else None). See NOTE [ Resuming a pass ] in loader_state.py.

        Example::

            >>> distrain.save({"loader": loader.state_dict(), ...}, "ckpt.dt")
            >>> fresh_loader.load_state_dict(distrain.load("ckpt.dt")["loader"])
            >>> for batch in fresh_loader:   # the rest of the interrupted pass
            ...     ...
        """
        return loader_state.state_of(self)

    def load_state_dict(self, state):
        """Make the next iter() continue the pass that `state` (from `state_dict()`) describes.

        Raises ArgumentError, naming the difference, for a state from a loader built
        differently (batch size, drop_last, dataset length, kind of sampler, a generator on
        one side only) or one that is not a DataLoader state; nothing is changed then.
        """
        self._resume = loader_state.load(self, state)
        self._progress = None

    def _to_device(self, batch):
        if self.device is None or self.device is backend.CPU:
            return batch
        from .device_copy import to_device

        return to_device(batch, self.device)


class _SingleProcessIterator:
    """num_workers=0: fetch each batch in this process when asked for it."""

    def __init__(self, loader, progress, batches):
        self.loader = loader
        self.progress = progress
        self.batches = batches
        self.stream = iter(loader.dataset) if loader.is_stream else None

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def __next__(self):
        loader = self.loader
        indices = next(self.batches)
        progress = self.progress
        randomness = (batch_randomness(batch_seed(progress.base_seed, progress.batches_taken)) if loader.fetcher.random
                      else _NO_RANDOMNESS)  # NOTE [ Deterministic datasets ]
        with randomness:
            if self.stream is not None:
                batch = loader.fetcher.next_from(self.stream)
                if batch is END:
                    raise StopIteration
                progress.batches_taken += 1
            else:
                progress.batches_taken += 1  # taken even if fetching it fails: the loop may go on to the next
                try:
                    batch = loader.fetcher.fetch(indices)
                except SampleError as error:
                    raise error.__cause__.with_traceback(error.__cause__.__traceback__) from None
        return loader._to_device(batch)


class _WorkerPoolIterator:
    """num_workers > 0: one epoch over the batches that a WorkerPool's processes fill ahead of the loop.

    `owns_pool`: the pool is this epoch's alone (stopped at its end); else it belongs to a
    DataLoader with persistent workers, and a later epoch (a new iterator) supersedes this one.
    """

    def __init__(self, loader, pool, progress, batches, owns_pool):
        self.loader = loader
        self.pool = pool
        self.owns_pool = owns_pool
        self.finished = False
        try:
            pool.begin_epoch(progress.base_seed)
        except BaseException:  # a worker died while an abandoned epoch drained: this pool is done
            pool.close(graceful=False)
            raise
        self.epoch = pool.epoch
        self.progress = progress
        self.batches = batches
        self.next_dispatch = progress.batches_taken  # batch numbers go on from a resumed pass's
        self.next_yield = progress.batches_taken
        self.exhausted = False
        self.worker_cycle = itertools.cycle(range(loader.num_workers))
        self._dispatch()

    @property
    def workers(self):
        return self.pool.workers

    @property
    def closed(self):
        return self.finished or self.pool.closed or self.pool.epoch != self.epoch

    def _dispatch(self):
        pool = self.pool
        while not self.exhausted and pool.has_room():
            if self.loader.is_stream and len(pool.ended_workers) == self.loader.num_workers:
                self.exhausted = True
                return
            indices = next(self.batches, END)
            if indices is END:
                self.exhausted = True
                return
            worker_id = next(self.worker_cycle)
            while worker_id in pool.ended_workers:
                worker_id = next(self.worker_cycle)
            pool.send(self.next_dispatch, indices, worker_id)
            self.next_dispatch += 1

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def __next__(self):
        try:
            return self._next_batch()
        except StopIteration:
            self.finished = True
            if self.owns_pool:
                self.pool.close()
            raise
        except BaseException as error:  # Ctrl-C, a dead worker, a timeout: stop the workers at once
            if not getattr(error, "recoverable", False):
                self.pool.close(graceful=False)
            raise

    def _next_batch(self):
        if self.closed:
            raise StopIteration
        pool = self.pool
        self._dispatch()
        while self.next_yield not in pool.arrived:
            if not pool.in_flight:
                raise StopIteration
            if self.next_yield not in pool.in_flight:  # a stream's batch that ended: skip its number
                self.next_yield += 1
                continue
            pool.receive()
            self._dispatch()  # a stream's end frees a place
        batch_index, self.next_yield = self.next_yield, self.next_yield + 1
        self.progress.batches_taken = self.next_yield  # taken even if it failed: the loop may go on to the next
        return self.loader._to_device(pool.take(batch_index))

    def close(self, graceful=True):
        """Stop the workers and free the shared memory (persistent ones too: the next epoch starts new ones)."""
        self.finished = True
        self.pool.close(graceful)
