"""The loader worker process: fetch the samples of a batch, collate, write the batch into a slot.

What runs inside each of a DataLoader's `num_workers` processes (NOTE [ Loader worker
protocol ] in loader.py). `get_worker_info()` tells dataset code, from inside a worker,
which worker it is (None in the main process), as torch.utils.data.get_worker_info does.
"""
from __future__ import annotations

import os
import queue
import random
import signal
import traceback
from dataclasses import dataclass

import numpy

from .collate import arrays_to_tensors, split_arrays
from .shared_slots import SlotAttachments, SlotTooSmall, write_arrays

POLL_SECONDS = 0.5  # how often an idle worker checks that its parent is still alive


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


def fetch_batch(dataset, indices, collate_fn, use_get_batch):
    """The collated batch of samples `indices` of a map-style dataset."""
    if use_get_batch:  # the dataset collates a whole batch itself (TensorDataset, ShardDataset)
        return arrays_to_tensors(dataset.get_batch(indices))
    samples = []
    for index in indices:
        try:
            samples.append(dataset[index])
        except Exception as error:
            raise SampleError(index) from error
    return collate_fn(samples)


def fetch_stream_batch(stream, batch_size, collate_fn):
    """The next batch of an IterableDataset's stream (batch_size None: one sample), or None at its end."""
    if batch_size is None:
        return next(stream, _END)
    samples = []
    for sample in stream:
        samples.append(sample)
        if len(samples) == batch_size:
            break
    return collate_fn(samples) if samples else _END


_END = object()


def worker_loop(worker_id, num_workers, dataset, is_stream, index_queue, result_queue, collate_fn, use_get_batch,
                batch_size, base_seed, worker_init_fn, parent_pid):
    """The body of one worker process; returns when told to stop or when its parent is gone."""
    global _worker_info
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it stops us
    _worker_info = WorkerInfo(worker_id, num_workers, base_seed + worker_id, dataset)
    seed_everything(base_seed + worker_id)
    attachments = SlotAttachments()
    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
        stream = iter(dataset) if is_stream else None
    except Exception:
        result_queue.put(("error", None, worker_id, None, traceback.format_exc()))
        return
    try:
        while True:
            try:
                task = index_queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if os.getppid() != parent_pid:  # orphaned: the main process died without stopping us
                    return
                continue
            if task is None:
                return
            epoch, batch_index, indices, slot, slot_name = task
            seed_everything(batch_seed(base_seed, batch_index))
            try:
                if is_stream:
                    batch = fetch_stream_batch(stream, batch_size, collate_fn)
                    if batch is _END:
                        result_queue.put(("end", epoch, batch_index, slot, worker_id))
                        continue
                else:
                    batch = fetch_batch(dataset, indices, collate_fn, use_get_batch)
                arrays = []
                skeleton = split_arrays(batch, arrays)
                layout = write_arrays(attachments.buffer(slot, slot_name), arrays)
            except SlotTooSmall as too_small:
                result_queue.put(("too_small", epoch, batch_index, slot, too_small.needed))
                continue
            except SampleError as error:
                result_queue.put(("error", epoch, worker_id, error.index,
                                  "".join(traceback.format_exception(error.__cause__))))
                continue
            except Exception:
                result_queue.put(("error", epoch, worker_id, None, traceback.format_exc()))
                continue
            result_queue.put(("ok", epoch, batch_index, slot, (skeleton, layout)))
    finally:
        attachments.close()
