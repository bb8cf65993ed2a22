"""A DataLoader's worker processes and the batches they hold: start, send, receive, stop.

NOTE [ Loader worker protocol ]
The main process owns everything shared: a pool of shared-memory slots (shared_slots.py),
one task queue per worker and one result queue. It keeps up to num_workers *
prefetch_factor batches in flight (sent, or arrived and waiting for their turn):

  main -> worker w   (epoch, base_seed, batch_index, indices, slot, slot_name)   or None: stop
  worker -> main     ("ok", epoch, batch_index, slot, (skeleton, layout))
                     ("too_small", epoch, batch_index, slot, bytes_needed)
                     ("end", epoch, batch_index, slot, worker_id)      its stream is exhausted
                     ("error", epoch, batch_index, worker_id, sample_index, traceback)
                                                   (batch_index None: worker_init_fn failed)

Batches go to workers round-robin and come back in any order; the iterator yields them in
batch order (a reorder buffer), so the sequence never depends on num_workers. A batch is
lent to the user with its slot, which returns to the pool only when nothing of that batch
is referenced any more (NOTE [ Slot leases ] in shared_slots.py). "too_small" makes the
main process replace that slot by a bigger segment and resend the task to the same worker,
which has kept the batch (a stream could not produce it twice) and now writes it. A new
epoch of persistent workers first drains the batches still in flight from an abandoned one.

Nothing waits forever: the main process polls the result queue every POLL_SECONDS and
checks that every worker is alive; a dead worker (killed by a signal, or exited) raises
WorkerError naming it and how it died; `timeout` bounds the wait for one batch. An
exception fetching one batch is raised in that batch's turn and the epoch can go on.
Arrays of Python objects (dtype=object) travel pickled with the skeleton, never as bytes.
That pickle crosses only the pipes of multiprocessing queues between this process and the
workers it started itself: one user, one trust domain (who can write to those pipes can
already trace the process). Nothing from a socket or another rank is ever unpickled.

Lifetimes. The pool holds nothing of the DataLoader or its iterators, so it is freed by
reference counting alone: when the iterator that owns it goes (or, with persistent
workers, the DataLoader), the pool's finalizer runs at once, without waiting for the cyclic
garbage collector; it also runs at interpreter exit. Shutdown (end of the epoch, an
exception or Ctrl-C in the loop, collection, exit) sends every worker None, joins it with
a timeout, kills what is left, and unlinks every slot. Workers ignore SIGINT and die with
the main process even when it is killed outright, stuck in dataset code or not
(worker.exit_with_parent); multiprocessing's resource tracker, which outlives them, then
unlinks the slots that the killed main process could not. (The tracker acts once every
process holding its pipe has ended: the slots are created, and the tracker started,
before the workers fork so that they share it; other children the program forked hold it
too, and the slots then go when the last of them does.)
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
import weakref

from ..errors import DistrainError
from .collate import join_arrays
from .shared_slots import SlotPool
from .worker import worker_loop
from .worker_threads import forked_workers_get_one_blas_thread

POLL_SECONDS = 0.2
JOIN_SECONDS = 5.0
DEFAULT_SLOT_BYTES = 1 << 20  # grown on demand (a batch that does not fit is re-fetched into a bigger slot)


class WorkerError(DistrainError, RuntimeError):
    """A loader worker failed: an exception in dataset/collate code, or the process died.

    `recoverable` is True when only one batch failed (an exception fetching it): the loop
    may catch the error and ask for the next batch, as with num_workers=0.
    """

    recoverable = False


def start_context(context):
    """The multiprocessing context to start workers with: fork where there is one (cheap, and
    the dataset need not be picklable), else the platform's default."""
    if context is None:
        context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return multiprocessing.get_context(context) if context is None or isinstance(context, str) else context


class WorkerPool:
    """`num_workers` processes filling shared-memory slots, and where each batch of the epoch is.

    in_flight: batch_index -> (indices, worker_id, slot)  sent, not yet back
    arrived:   batch_index -> (slot, (skeleton, layout)) back, waiting for its turn;
               (None, WorkerError) for a batch whose fetching failed
    """

    def __init__(self, dataset, fetcher, num_workers, prefetch_factor, worker_init_fn, context, timeout, first_seed):
        self.closed = False
        self.timeout = timeout
        self.num_workers = num_workers
        self.in_flight_limit = num_workers * prefetch_factor
        # lent batches beyond in_flight_limit + 1 (the one in the user's hands as the next is asked for) are copies.
        # A loop that lets its batches go uses in_flight_limit + 1 slots: all made now, before the workers fork,
        # so none is made during the epoch (a kill between a segment's creation and its registration with the
        # resource tracker would leak that segment)
        self.slots = SlotPool(self.in_flight_limit + 1, DEFAULT_SLOT_BYTES, lease_limit=self.in_flight_limit + 1)
        context = start_context(context)
        self.task_queues = [context.Queue() for _ in range(num_workers)]
        self.result_queue = context.Queue()
        self.workers = []
        # registered before any worker starts, so a failed start still frees the slots
        self._finalizer = weakref.finalize(self, _shut_down, self.workers, self.task_queues, self.result_queue,
                                           self.slots, os.getpid())
        prepare = getattr(dataset, "prepare_for_workers", None)
        if prepare is not None:  # e.g. ShardDataset checks its shards here once, not once per worker
            prepare()
        # the kernel's parent-death signal follows the thread that forks: only the main thread lives as long as we do
        death_signal = threading.current_thread() is threading.main_thread()
        # NOTE [ One thread per loader worker ] (worker_threads.py): forked workers inherit one BLAS thread
        forking = context.get_start_method() == "fork"
        with forked_workers_get_one_blas_thread() if forking else contextlib.nullcontext():
            for worker_id in range(num_workers):
                process = context.Process(
                    target=worker_loop, daemon=True, name=f"distrain-loader-worker-{worker_id}",
                    args=(worker_id, num_workers, fetcher, self.task_queues[worker_id], self.result_queue,
                          worker_init_fn, os.getpid(), first_seed, death_signal))
                self.workers.append(process)
                process.start()
        self.epoch, self.base_seed = -1, first_seed
        self.in_flight, self.arrived, self.ended_workers = {}, {}, set()

    def begin_epoch(self, base_seed):
        """Start a pass over the data; batches still in flight from an abandoned one are drained first."""
        while self.in_flight:  # an abandoned epoch's slots are busy until their batches arrive
            self.receive()
        for slot, _ in self.arrived.values():
            if slot is not None:
                self.slots.release(slot)
        self.in_flight, self.arrived, self.ended_workers = {}, {}, set()
        self.epoch += 1
        self.base_seed = base_seed

    def has_room(self):
        return len(self.in_flight) + len(self.arrived) < self.in_flight_limit

    def send(self, batch_index, indices, worker_id):
        self._send(batch_index, indices, worker_id, self.slots.acquire())

    def _send(self, batch_index, indices, worker_id, slot):
        self.in_flight[batch_index] = (indices, worker_id, slot)
        self.task_queues[worker_id].put((self.epoch, self.base_seed, batch_index, indices, slot,
                                         self.slots.name(slot)))

    def take(self, batch_index):
        """The arrived batch `batch_index`, its arrays lent from their slot; raises its error if it failed."""
        slot, payload = self.arrived.pop(batch_index)
        if slot is None:  # a batch whose fetching failed: raise its error now, in order
            error, payload = payload, None
            try:
                raise error
            finally:
                del error  # no frame -> traceback -> frame cycle: the iterator can be freed at once
        skeleton, layout = payload
        return join_arrays(skeleton, self.slots.lend(slot, layout))

    def receive(self):
        """Handle one message from the workers, waiting at most `timeout` (and checking they live)."""
        waited = 0.0
        while True:
            try:
                message = self.result_queue.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                waited += POLL_SECONDS
                self.check_workers()
                if self.timeout and waited >= self.timeout:
                    first = min(self.in_flight)
                    raise WorkerError(f"DataLoader timed out after {self.timeout} s waiting for batch {first} "
                                      f"from worker {self.in_flight[first][1]}; raise timeout= or look for "
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
            _, _, slot = self.in_flight.pop(batch_index)
            self.slots.release(slot)
            self.arrived[batch_index] = (None, error)
            return
        _, epoch, batch_index, slot, payload = message
        if kind == "ok":
            del self.in_flight[batch_index]
            self.arrived[batch_index] = (slot, payload)
        elif kind == "too_small":
            indices, worker_id, _ = self.in_flight[batch_index]
            self.slots.grow(slot, payload)
            self._send(batch_index, indices, worker_id, slot)
        elif kind == "end":  # payload: the worker whose stream ended
            del self.in_flight[batch_index]
            self.ended_workers.add(payload)
            self.slots.release(slot)

    def check_workers(self):
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


def _shut_down(workers, task_queues, result_queue, slots, owner_pid):
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
    slots.close()
