"""What outlives what: kept batches outlive the loop, workers and slots do not outlive their loader.

- A batch from a loader with workers views a shared-memory slot; keeping it (or any view of
  it) must keep that slot from being reused, so every kept batch still holds its own values
  at the end of the epoch. The oracle is the same loader with num_workers=0, whose batches
  are ordinary arrays.
- A dropped DataLoader(persistent_workers=True) stops its workers and unlinks its slots at
  once, by reference counting alone (the tests run with the cyclic collector off), and at
  interpreter exit.
- Workers die with the main process even while stuck in dataset code, whether it is killed
  with SIGTERM or SIGKILL, and nothing is left behind: no worker, no resource tracker, no
  /dev/shm file.
"""
import gc
import textwrap

import numpy as np
import pytest

from distrain.data import DataLoader, Dataset

from ..conftest import CUDA_AVAILABLE
from .oracle import assert_same_batches, plain
from .processes import (REPO, alive, kill_group, kill_pids, read_until_started, segments, start_script,
                        wait_until_gone, wait_until_no_segments)


class Labelled(Dataset):
    """Sample i: a float32 (2, 3) image filled with i plus noise drawn from the global generator, label i % 7."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return np.full((2, 3), index, np.float32) + np.random.rand(2, 3).astype(np.float32), index % 7


def _loader(num_workers, **kwargs):
    return DataLoader(Labelled(45), batch_size=4, shuffle=True, seed=5, num_workers=num_workers, **kwargs)


def _epochs(loader, count):
    """`count` epochs, every batch kept as it came out (nothing copied until all are done)."""
    return [list(loader) for _ in range(count)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("options", [{}, {"persistent_workers": True}, {"pin_memory": True},
                                     {"persistent_workers": True, "prefetch_factor": 1}],
                         ids=["plain", "persistent", "pin_memory", "persistent-prefetch-1"])
def test_every_kept_batch_equals_the_single_process_loaders(options):
    expected = [[plain(batch) for batch in epoch] for epoch in _epochs(_loader(0), 3)]
    loader = _loader(2, **options)
    kept = _epochs(loader, 3)  # with persistent workers, one pool of slots serves all three epochs
    for epoch, (ours, theirs) in enumerate(zip(kept, expected)):
        assert_same_batches([plain(batch) for batch in ours], theirs, f"epoch {epoch}")


@pytest.mark.timeout(60)
def test_kept_labels_give_the_right_accuracy():
    """The user-visible symptom: labels kept in a list, images dropped, metrics computed at the end."""
    def kept_labels(num_workers):
        return [labels for images, labels in _loader(num_workers)]

    expected = np.concatenate([labels.numpy() for labels in kept_labels(0)])
    ours = np.concatenate([labels.numpy() for labels in kept_labels(2)])
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.timeout(60)
def test_a_kept_view_keeps_its_batch():
    expected = [batch[0].numpy()[1:].copy() for batch in _loader(0)]
    views = [batch[0].numpy()[1:] for batch in _loader(2)]  # the batch itself is dropped at once
    assert len(views) == len(expected)
    for ours, theirs in zip(views, expected):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.timeout(60)
def test_keeping_every_batch_bounds_the_shared_memory_and_never_blocks():
    reference = _loader(0)
    expected = [[plain(batch) for batch in reference] for _ in range(2)]
    loader = _loader(2, persistent_workers=True)
    iterator = iter(loader)
    pool = iterator.pool
    try:
        kept, most_slots = [], 0
        for batch in iterator:
            kept.append(batch)
            most_slots = max(most_slots, len(pool.slots))
        assert_same_batches([plain(batch) for batch in kept], expected[0])
        # in flight (2 workers x 2) plus at most lease_limit lent; later batches were handed over as copies
        assert most_slots <= pool.in_flight_limit + pool.slots.lease_limit
        assert pool.slots.lent == pool.slots.lease_limit
        del kept, batch
        assert pool.slots.lent == 0, "every slot returns to the pool when its batch is let go of"
        assert_same_batches([plain(batch) for batch in loader], expected[1])
        assert len(pool.slots) == most_slots, "returned slots are reused, not added to"
    finally:
        iterator.close()


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs cupy and a CUDA device")
@pytest.mark.timeout(120)
def test_every_kept_device_batch_equals_the_single_process_loaders():
    expected = [plain(batch) for batch in _loader(0)]
    kept = list(_loader(2, device="cuda:0"))
    assert all(batch[0].is_cuda for batch in kept)
    assert_same_batches([plain(batch) for batch in kept], expected)


# ----------------------------------------------------------------------------- dropped loaders

class Numbers(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, index):
        return np.full(4, index, np.float32)


@pytest.fixture
def no_cyclic_gc():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.timeout(120)
def test_a_dropped_persistent_loader_stops_its_workers_and_frees_its_slots_without_the_gc(no_cyclic_gc):
    before = segments()
    pids = []
    try:
        for round_number in range(4):
            loader = DataLoader(Numbers(), batch_size=4, num_workers=2, persistent_workers=True)
            kept = next(iter(loader))  # an abandoned epoch, and a batch kept beyond the loader's life
            for _ in loader:  # a whole epoch
                pass
            iterator = iter(loader)  # a third epoch, left running
            next(iterator)
            round_pids = [worker.pid for worker in iterator.workers]
            pids += round_pids
            assert segments() - before and all(alive(pid) for pid in round_pids)
            del loader, iterator
            assert wait_until_gone(round_pids) == [], f"round {round_number}: workers outlived their loader"
            assert segments() - before == set(), f"round {round_number}: slots outlived their loader"
            np.testing.assert_array_equal(kept.numpy(), np.repeat(np.arange(4, dtype=np.float32)[:, None], 4, 1))
    finally:
        kill_pids(pids)


EXIT_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    sys.path.insert(0, {repo!r})
    from distrain.data import DataLoader, Dataset

    class Numbers(Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, index):
            return np.full(4, index, np.float32)

    loader = DataLoader(Numbers(), batch_size=4, num_workers=2, persistent_workers=True)
    for _ in loader:
        pass
    iterator = iter(loader)
    kept = next(iterator)
    cycle = [loader]
    cycle.append(cycle)  # only the collector at exit could free the loader: the exit path must
    print("pids:", *[w.pid for w in iterator.workers], flush=True)
    print("started", flush=True)
""")


@pytest.mark.timeout(60)
def test_persistent_workers_and_slots_end_with_the_interpreter(tmp_path):
    process = start_script(tmp_path / "exits.py", EXIT_SCRIPT.format(repo=REPO))
    try:
        pids = read_until_started(process)["pids"]
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr.decode()
        assert stderr.decode() == "", "nothing leaked, nothing ignored in a finalizer"
        assert wait_until_gone(pids) == []
        assert segments(process.pid) == set()
    finally:
        kill_group(process)


# ----------------------------------------------------------------------------- a killed main process

STUCK_SCRIPT = textwrap.dedent("""
    import os, sys, threading, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from multiprocessing import resource_tracker
    from distrain.data import DataLoader, Dataset

    class Stuck(Dataset):
        '''Samples 0 and 1 come at once; every other one is stuck in user code forever.'''

        def __len__(self):
            return 100

        def __getitem__(self, index):
            while index > 1:
                time.sleep(1000)
            return np.full(4, index, np.float32)

    def run():
        iterator = iter(DataLoader(Stuck(), batch_size=2, num_workers=2))
        next(iterator)
        print("pids:", *[w.pid for w in iterator.workers], flush=True)
        print("tracker:", resource_tracker._resource_tracker._pid, flush=True)
        print("started", flush=True)
        next(iterator)  # waits forever: both workers are stuck

    if {in_thread}:  # a loader started from another thread: the workers' watchdog, not the kernel, ends them
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    else:
        run()
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "other-thread"])
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_workers_stuck_in_dataset_code_die_with_a_killed_main_process(tmp_path, signal_name, in_thread):
    import os
    import signal

    process = start_script(tmp_path / "stuck.py", STUCK_SCRIPT.format(repo=REPO, in_thread=in_thread))
    try:
        started = read_until_started(process)
        pids, tracker = started["pids"], started["tracker"][0]
        assert len(pids) == 2 and all(alive(pid) for pid in pids) and alive(tracker)
        assert segments(process.pid)
        os.kill(process.pid, getattr(signal, signal_name))  # the main process alone, not its group
        process.wait(10)
        assert wait_until_gone(pids) == [], "workers outlived the main process"
        assert wait_until_gone([tracker]) == [], "the resource tracker outlived the main process"
        assert wait_until_no_segments(process.pid) == set(), "shared memory outlived the main process"
    finally:
        kill_group(process)
