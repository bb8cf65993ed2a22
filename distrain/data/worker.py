"""The loader worker process: fetch the samples of a batch, collate, write the batch into a slot.

What runs inside each of a DataLoader's `num_workers` processes (NOTE [ Loader worker
protocol ] in worker_pool.py). `get_worker_info()` tells dataset code, from inside a worker,
which worker it is (None in the main process), as torch.utils.data.get_worker_info does.
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time
import traceback
from dataclasses import dataclass

import numpy

from ..process_lifetime import die_with_parent
from .collate import arrays_to_tensors, split_arrays
from .shared_slots import SlotAttachments, SlotTooSmall, write_arrays
from .worker_threads import use_one_thread

PARENT_POLL_SECONDS = 0.2  # how often a worker's watchdog checks that its parent is still alive


@dataclass
class WorkerInfo:
    """Which worker this is: id (0..num_workers-1), num_workers, seed, and its copy of the dataset."""

    id: int
    num_workers: int
    seed: int
    dataset: object


_worker_info = None


def get_worker_info():
    """The WorkerInfo of the current loader worker process, or None in the main process."""
    return _worker_info


def batch_seed(base_seed, batch_index):
    """The seed of one batch: derived from the loader's seed and the batch's position only.

    Every random number a dataset or transform draws while producing batch b comes from
    generators reseeded with this, whichever worker (or the main process) produces it:
    that is what makes the data independent of num_workers.
    """
    return int(numpy.random.SeedSequence([base_seed, batch_index]).generate_state(1, numpy.uint64)[0] >> 1)


def seed_everything(seed):
    """Reseed Python's, NumPy's global and distrain's generators (what transforms draw from)."""
    from ..engine.random import manual_seed

    random.seed(seed)
    numpy.random.seed(seed % 2 ** 32)
    manual_seed(seed)


# NOTE [ Deterministic datasets ]
# Reseeding the global generators for every batch (and, in the main process, saving and
# restoring them around it) is what makes random transforms independent of num_workers, but
# it costs 250-400 us per batch, mostly numpy.random.get_state/set_state: 9% of a small
# CNN's step. A dataset whose batches draw no random numbers says so with a
# `draws_random_numbers = False` attribute (TensorDataset, ShardDataset without a transform
# or with one that says so itself); with the default collate_fn its batches skip the
# reseeding, which nothing could observe. Without the attribute a dataset is assumed random.
def batches_draw_random_numbers(dataset, collate_fn) -> bool:
    return collate_fn is not None or getattr(dataset, "draws_random_numbers", True)


class batch_randomness:
    """Within the block, the global generators are seeded for one batch; afterwards they are as before.

    The main process (num_workers=0) fetches batches between the user's own random draws
    (dropout, initialisation): those must not be disturbed by the per-batch seeding.
    """

    def __init__(self, seed):
        self.seed = seed

    def __enter__(self):
        from ..engine.random import get_rng_state

        self.saved = (random.getstate(), numpy.random.get_state(), get_rng_state())
        seed_everything(self.seed)

    def __exit__(self, *exc_info):
        from ..engine.random import set_rng_state

        python_state, numpy_state, distrain_state = self.saved
        random.setstate(python_state)
        numpy.random.set_state(numpy_state)
        set_rng_state(distrain_state)


class SampleError(Exception):
    """Fetching or transforming sample `index` raised (the original exception is chained)."""

    def __init__(self, index):
        super().__init__(index)
        self.index = index


@dataclass
class Fetcher:
    """How one batch is made from a dataset: the same in the main process and in every worker.

    auto_collation: samples are grouped into batches (batch_size or batch_sampler given);
    otherwise each "batch" is one sample, converted by collate_fn.
    """

    dataset: object
    is_stream: bool
    auto_collation: bool
    collate_fn: object
    use_get_batch: bool
    batch_size: object
    drop_last: bool
    random: bool = True  # making a batch may draw random numbers (NOTE [ Deterministic datasets ])

    def fetch(self, indices):
        """The batch of a map-style dataset for `indices` (a list, or one index without batching)."""
        if not self.auto_collation:
            return self.collate_fn(self._sample(indices))
        if self.use_get_batch:  # the dataset collates a whole batch itself (TensorDataset, ShardDataset)
            return arrays_to_tensors(self.dataset.get_batch(indices))
        return self.collate_fn([self._sample(index) for index in indices])

    def _sample(self, index):
        try:
            return self.dataset[index]
        except Exception as error:
            raise SampleError(index) from error

    def next_from(self, stream):
        """The next batch of an IterableDataset's stream, or END when it is exhausted."""
        if not self.auto_collation:
            sample = next(stream, END)
            return sample if sample is END else self.collate_fn(sample)
        samples = []
        for sample in stream:
            samples.append(sample)
            if len(samples) == self.batch_size:
                break
        if not samples or (self.drop_last and len(samples) < self.batch_size):
            return END
        return self.collate_fn(samples)


END = object()


def exit_with_parent(parent_pid, death_signal):
    """Make this process end when `parent_pid` (the DataLoader's process) does, even while it is
    stuck in dataset code.

    Two guards, because a worker may be blocked anywhere, in Python or in C: on Linux the
    kernel SIGKILLs us when our parent dies (prctl PR_SET_PDEATHSIG; `death_signal` is False
    when the parent started us from a thread other than its main thread, since the kernel
    sends the signal when that *thread* ends), and everywhere a daemon thread polls for the
    parent and ends the process once it is gone. A worker started by a forkserver is the
    server's child, not the loader's: it watches the loader's pid instead.
    """
    direct_child = os.getppid() == parent_pid  # False too if the parent already died: then we exit below
    if direct_child and death_signal:
        die_with_parent()

    def parent_alive():
        if direct_child:
            return os.getppid() == parent_pid  # reparented once the parent is gone
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    if not parent_alive():  # it died before the signal was armed
        os._exit(1)

    def watch():
        while parent_alive():
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="distrain-parent-watch", daemon=True).start()


def worker_loop(worker_id, num_workers, fetcher, index_queue, result_queue, worker_init_fn, parent_pid, first_seed,
                death_signal=False):
    """The body of one worker process; returns when told to stop, ends when its parent is gone."""
    global _worker_info
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it stops us
    exit_with_parent(parent_pid, death_signal)
    use_one_thread()  # NOTE [ One thread per loader worker ]: before worker_init_fn, which may raise it
    _worker_info = WorkerInfo(worker_id, num_workers, first_seed + worker_id, fetcher.dataset)
    seed_everything(first_seed + worker_id)
    attachments = SlotAttachments()
    held = {}  # (epoch, batch_index) -> (skeleton, arrays) of batches waiting for a bigger slot
    stream, stream_epoch = None, None
    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
    except Exception:
        result_queue.put(("error", None, None, worker_id, None, traceback.format_exc()))
        return
    try:
        while True:
            task = index_queue.get()  # no timeout needed: exit_with_parent ends us if the main process dies
            if task is None:
                return
            epoch, base_seed, batch_index, indices, slot, slot_name = task
            try:
                if (epoch, batch_index) in held:  # the resend of a batch that did not fit its slot
                    skeleton, arrays = held.pop((epoch, batch_index))
                else:
                    if fetcher.random:
                        seed_everything(batch_seed(base_seed, batch_index))
                    if fetcher.is_stream:
                        if stream_epoch != epoch:  # every epoch reads the stream from its start
                            stream, stream_epoch = iter(fetcher.dataset), epoch
                        batch = fetcher.next_from(stream)
                        if batch is END:
                            result_queue.put(("end", epoch, batch_index, slot, worker_id))
                            continue
                    else:
                        batch = fetcher.fetch(indices)
                    arrays = []
                    skeleton = split_arrays(batch, arrays)
                layout = write_arrays(attachments.buffer(slot, slot_name), arrays)
            except SlotTooSmall as too_small:
                # Keep the batch (a stream cannot produce it again) until the bigger slot is named.
                held[(epoch, batch_index)] = (skeleton, arrays)
                result_queue.put(("too_small", epoch, batch_index, slot, too_small.needed))
                continue
            except SampleError as error:
                result_queue.put(("error", epoch, batch_index, worker_id, error.index,
                                  "".join(traceback.format_exception(error.__cause__))))
                continue
            except Exception:
                result_queue.put(("error", epoch, batch_index, worker_id, None, traceback.format_exc()))
                continue
            result_queue.put(("ok", epoch, batch_index, slot, (skeleton, layout)))
    finally:
        attachments.close()
