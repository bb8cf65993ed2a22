"""DataLoader: batches from a dataset, read ahead by worker processes.

NOTE [ Loader worker protocol ]
The main process owns everything shared: a ring of shared-memory slots (shared_slots.py),
one task queue per worker and one result queue. It keeps up to num_workers *
prefetch_factor batches in flight:

  main -> worker w   (epoch, base_seed, batch_index, indices, slot, slot_name)   or None: stop
  worker -> main     ("ok", epoch, batch_index, slot, (skeleton, layout))
                     ("too_small", epoch, batch_index, slot, bytes_needed)
                     ("end", epoch, batch_index, slot, worker_id)      its stream is exhausted
                     ("error", epoch, batch_index, worker_id, sample_index, traceback)
                                                   (batch_index None: worker_init_fn failed)

Batches go to workers round-robin and come back in any order; the main process yields
them in batch order (a reorder buffer), so the sequence never depends on num_workers. A
slot is lent to the user with the batch it holds and returns to the ring when the next
batch is requested: CPU batches are views of shared memory, valid until then (copy a
batch, e.g. `x.clone()`, to keep it longer). "too_small" makes the main process replace
that slot by a bigger segment and resend the task to the same worker, which has kept the
batch (a stream could not produce it twice) and now writes it. A new epoch of
persistent workers first drains the batches still in flight from an abandoned one.

Nothing waits forever: the main process polls the result queue every POLL_SECONDS and
checks that every worker is alive; a dead worker (killed by a signal, or exited) raises
WorkerError naming it and how it died; `timeout` bounds the wait for one batch. An
exception fetching one batch is raised in that batch's turn and the epoch can go on.
Arrays of Python objects (dtype=object) travel pickled with the skeleton, never as bytes. Workers
ignore SIGINT and exit when their parent disappears. Shutdown (end of the epoch, an
exception or Ctrl-C in the loop, garbage collection, interpreter exit) sends every worker
None, joins it with a timeout, kills what is left, and unlinks every slot.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
import time
import weakref

import numpy

from ..engine import backend
from ..engine.random import Generator, default_generator
from ..errors import DistrainError
from .collate import convert_sample, default_collate, join_arrays
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler
from .shared_slots import SlotRing, read_arrays
from .worker import END, Fetcher, SampleError, batch_randomness, batch_seed, worker_loop

POLL_SECONDS = 0.2
JOIN_SECONDS = 5.0
DEFAULT_SLOT_BYTES = 1 << 20  # grown on demand (a batch that does not fit is re-fetched into a bigger slot)


class WorkerError(DistrainError, RuntimeError):
    """A loader worker failed: an exception in dataset/collate code, or the process died.

    `recoverable` is True when only one batch failed (an exception fetching it): the loop
    may catch the error and ask for the next batch, as with num_workers=0.
    """

    recoverable = False


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

    With num_workers > 0 a CPU batch is a view of shared memory valid until the next batch
    is requested (see NOTE [ Loader worker protocol ]).

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
                               batch_size, drop_last)
        self.device = backend.Device(device) if device is not None else None
        self.pin_memory = pin_memory
        self._workers_iterator = None

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
        if self.num_workers == 0:
            return _SingleProcessIterator(self)
        if self.persistent_workers:
            if self._workers_iterator is None or self._workers_iterator.closed:
                self._workers_iterator = _WorkerPoolIterator(self)
            else:
                self._workers_iterator.start_epoch()
            return self._workers_iterator
        return _WorkerPoolIterator(self)

    def _to_device(self, batch):
        if self.device is None or self.device is backend.CPU:
            return batch
        from .device_copy import to_device

        return to_device(batch, self.device)


class _SingleProcessIterator:
    """num_workers=0: fetch each batch in this process when asked for it."""

    def __init__(self, loader):
        self.loader = loader
        self.batches = loader._index_batches()
        self.stream = iter(loader.dataset) if loader.is_stream else None
        self.base_seed = loader._new_base_seed()
        self.batch_index = 0

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def __next__(self):
        loader = self.loader
        indices = next(self.batches)
        with batch_randomness(batch_seed(self.base_seed, self.batch_index)):
            if self.stream is not None:
                batch = loader.fetcher.next_from(self.stream)
                if batch is END:
                    raise StopIteration
            else:
                try:
                    batch = loader.fetcher.fetch(indices)
                except SampleError as error:
                    raise error.__cause__.with_traceback(error.__cause__.__traceback__) from None
        self.batch_index += 1
        return loader._to_device(batch)


class _WorkerPoolIterator:
    """num_workers > 0: worker processes fill shared-memory slots ahead of the loop."""

    def __init__(self, loader):
        self.loader = loader
        self.closed = False
        context = loader.multiprocessing_context
        if context is None:
            context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        context = multiprocessing.get_context(context) if context is None or isinstance(context, str) else context
        self.in_flight_limit = loader.num_workers * loader.prefetch_factor
        self.ring = SlotRing(self.in_flight_limit + 1, DEFAULT_SLOT_BYTES)  # +1: the slot lent to the user
        self.task_queues = [context.Queue() for _ in range(loader.num_workers)]
        self.result_queue = context.Queue()
        self.base_seed = loader._new_base_seed()
        self.workers = []
        # registered before any worker starts, so a failed start still frees the slots
        self._finalizer = weakref.finalize(self, _shut_down, self.workers, self.task_queues, self.result_queue,
                                           self.ring, os.getpid())
        prepare = getattr(loader.dataset, "prepare_for_workers", None)
        if prepare is not None:  # e.g. ShardDataset checks its shards here once, not once per worker
            prepare()
        for worker_id in range(loader.num_workers):
            process = context.Process(
                target=worker_loop, daemon=True, name=f"distrain-loader-worker-{worker_id}",
                args=(worker_id, loader.num_workers, loader.fetcher, self.task_queues[worker_id], self.result_queue,
                      loader.worker_init_fn, os.getpid(), self.base_seed))
            self.workers.append(process)
            process.start()
        self.epoch = -1
        self.start_epoch()

    # -- epochs ---------------------------------------------------------------------------
    def start_epoch(self):
        """Begin a (new) pass over the data; batches still in flight from an earlier one are drained first."""
        while getattr(self, "pending", None):  # an abandoned epoch's slots are busy until their batches arrive
            self._receive()
        self.epoch += 1
        if self.epoch:
            self.base_seed = self.loader._new_base_seed()
        self.batches = self.loader._index_batches()
        self.free_slots = list(range(len(self.ring)))
        self.pending = {}  # batch_index -> (indices, worker_id, slot) dispatched, not yet yielded
        self.ready = {}  # batch_index -> (slot, payload) arrived, waiting for its turn
        self.ended_workers = set()
        self.next_dispatch = 0
        self.next_yield = 0
        self.lent_slot = None
        self.exhausted = False
        self.worker_cycle = itertools.cycle(range(self.loader.num_workers))
        self._dispatch()

    def _dispatch(self):
        while not self.exhausted and len(self.pending) < self.in_flight_limit and self.free_slots:
            if self.loader.is_stream and len(self.ended_workers) == self.loader.num_workers:
                self.exhausted = True
                return
            indices = next(self.batches, END)
            if indices is END:
                self.exhausted = True
                return
            worker_id = next(self.worker_cycle)
            while worker_id in self.ended_workers:
                worker_id = next(self.worker_cycle)
            self._send(self.next_dispatch, indices, worker_id, self.free_slots.pop())
            self.next_dispatch += 1

    def _send(self, batch_index, indices, worker_id, slot):
        self.pending[batch_index] = (indices, worker_id, slot)
        self.task_queues[worker_id].put((self.epoch, self.base_seed, batch_index, indices, slot, self.ring.name(slot)))

    # -- iteration --------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def __next__(self):
        try:
            return self._next_batch()
        except StopIteration:
            if not self.loader.persistent_workers:
                self.close()
            raise
        except BaseException as error:  # Ctrl-C, a dead worker, a timeout: stop the workers at once
            if not getattr(error, "recoverable", False):
                self.close(graceful=False)
            raise

    def _next_batch(self):
        if self.closed:
            raise StopIteration
        if self.lent_slot is not None:
            self.free_slots.append(self.lent_slot)
            self.lent_slot = None
        self._dispatch()
        while self.next_yield not in self.ready:
            if not self.pending:
                raise StopIteration
            if self.next_yield not in self.pending:  # a stream's batch that ended: skip its number
                self.next_yield += 1
                continue
            self._receive()
        slot, payload = self.ready.pop(self.next_yield)
        self.next_yield += 1
        if slot is None:  # a batch whose fetching failed: raise its error now, in order
            error, payload = payload, None
            try:
                raise error
            finally:
                del error  # no frame -> traceback -> frame cycle: the iterator can be freed at once
        skeleton, layout = payload
        self.lent_slot = slot
        batch = join_arrays(skeleton, read_arrays(self.ring.buffer(slot), layout))
        return self.loader._to_device(batch)

    def _receive(self):
        """Handle one message from the workers, waiting at most `timeout` (and checking they live)."""
        waited = 0.0
        timeout = self.loader.timeout
        while True:
            try:
                message = self.result_queue.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                waited += POLL_SECONDS
                self._check_workers()
                if timeout and waited >= timeout:
                    raise WorkerError(f"DataLoader timed out after {timeout} s waiting for batch {self.next_yield} "
                                      f"from worker {self.pending[min(self.pending)][1]}; raise timeout= or look for "
                                      "a slow or stuck dataset __getitem__")
        kind = message[0]
        if kind == "error":
            _, epoch, batch_index, worker_id, sample_index, text = message
            where = f" while fetching sample {sample_index}" if sample_index is not None else ""
            error = WorkerError(f"DataLoader worker {worker_id} raised an exception{where}. Its traceback:\n{text}")
            if batch_index is None:  # worker_init_fn failed: nothing can follow
                raise error
            error.recoverable = True  # only this batch failed: the loop may catch it and go on
            # raised in batch order, when its turn comes, like every batch (as PyTorch does)
            _, _, slot = self.pending.pop(batch_index)
            self.free_slots.append(slot)
            self.ready[batch_index] = (None, error)
            return
        _, epoch, batch_index, slot, payload = message
        if kind == "ok":
            del self.pending[batch_index]
            self.ready[batch_index] = (slot, payload)
        elif kind == "too_small":
            indices, worker_id, _ = self.pending[batch_index]
            self.ring.grow(slot, payload)
            self._send(batch_index, indices, worker_id, slot)
        elif kind == "end":  # payload: the worker whose stream ended
            del self.pending[batch_index]
            self.ended_workers.add(payload)
            self.free_slots.append(slot)
            self._dispatch()

    def _check_workers(self):
        for worker_id, process in enumerate(self.workers):
            code = process.exitcode
            if code is not None:
                how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
                       else f"exited with code {code}")
                raise WorkerError(f"DataLoader worker {worker_id} (pid {process.pid}) {how} unexpectedly; "
                                  "if it was killed for memory (SIGKILL), lower num_workers, prefetch_factor or "
                                  "batch_size")

    def close(self, graceful=True):
        """Stop the workers and free the shared memory (also done at exit and on garbage collection).

        After an error the workers are not waited for (they may be stuck, e.g. on a queue lock
        that a killed sibling held): they are killed.
        """
        if not self.closed:
            self.closed = True
            if not graceful:
                for process in self.workers:
                    if process.is_alive():
                        process.kill()
            self._finalizer()


def _shut_down(workers, task_queues, result_queue, ring, owner_pid):
    """See NOTE [ Loader worker protocol ]: stop, join with a timeout, kill the rest, unlink slots."""
    if os.getpid() != owner_pid:  # a forked worker inherited this finalizer: the pool is not its to stop
        return
    for task_queue, process in zip(task_queues, workers):
        if process.pid is not None and process.is_alive():
            try:
                task_queue.put(None)
            except (OSError, ValueError):
                pass
    deadline = time.monotonic() + JOIN_SECONDS
    for process in workers:
        if process.pid is None:  # never started (the start failed)
            continue
        process.join(max(deadline - time.monotonic(), 0))
        if process.is_alive():
            process.kill()
            process.join(JOIN_SECONDS)
    for channel in (*task_queues, result_queue):
        channel.cancel_join_thread()
        channel.close()
    ring.close()
