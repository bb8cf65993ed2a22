"""DataLoader faults: worker exceptions and deaths, timeouts, Ctrl-C, and no leaked shared memory.

Every test that starts worker processes has a timeout and closes (or kills) what it started
in a `finally`, so a broken loader fails a test instead of hanging the suite. Shared-memory
slots are named `distrain_<main pid>_...` (shared_slots.py), so a leak is visible in /dev/shm.
What outlives what (kept batches, dropped loaders, a killed main process) is in
test_loader_lifetimes.py.
"""
import gc
import os
import signal
import textwrap
import time

import numpy as np
import pytest

from distrain.data import DataLoader, Dataset, WorkerError

from .processes import (REPO, alive, kill_group, kill_pids, kill_workers, read_until_started, segments, start_script,
                        wait_until_gone, wait_until_no_segments)

@pytest.fixture(autouse=True)
def no_new_segments():
    """Each test must leave no more distrain segments of this process than it found."""
    gc.collect()
    before = segments()
    yield
    gc.collect()
    assert segments() - before == set(), "shared-memory segments leaked"


class Numbers(Dataset):
    """Sample i is float32 [i, i, i, i]; optionally slow, or failing at one index."""

    def __init__(self, n, sleep=0.0, fail_at=None, sleep_at=None, slow_before=0):
        self.n, self.sleep, self.fail_at, self.sleep_at = n, sleep, fail_at, sleep_at
        self.slow_before = slow_before

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if self.sleep:
            time.sleep(self.sleep)
        if index == self.sleep_at:
            time.sleep(2.0)
        if index < self.slow_before:
            time.sleep(0.1)
        if index == self.fail_at:
            raise ValueError(f"cannot decode sample number {index}")
        return np.full(4, index, np.float32)


# ----------------------------------------------------------------------------- exceptions in workers

@pytest.mark.timeout(60)
@pytest.mark.parametrize("num_workers", [1, 2])
def test_worker_exception_reraises_with_its_traceback_and_sample(num_workers):
    # samples 0-5 are slow, so with 2 workers the failing batch [6, 7] is fetched before the
    # batches ahead of it: the error must still come in batch order, as in torch
    dataset = Numbers(12, fail_at=7, slow_before=6)
    iterator = iter(DataLoader(dataset, batch_size=2, num_workers=num_workers))
    try:
        seen = []
        with pytest.raises(WorkerError) as caught:
            for batch in iterator:
                seen.extend(int(v) for v in batch.numpy()[:, 0])
        message = str(caught.value)
        assert isinstance(caught.value, RuntimeError)
        assert "Traceback" in message
        assert "__getitem__" in message and "test_loader_faults.py" in message
        assert "ValueError: cannot decode sample number 7" in message
        assert "sample 7" in message
        assert f"worker {6 // 2 % num_workers}" in message  # batch 3 ([6, 7]) went to this worker
        assert seen == list(range(6)), "batches before the failing one arrive in order"
        assert caught.value.recoverable and not iterator.closed
        seen.extend(int(v) for batch in iterator for v in batch.numpy()[:, 0])  # the epoch goes on, as in torch
        assert seen == list(range(6)) + [8, 9, 10, 11]
        assert iterator.closed
        assert wait_until_gone([w.pid for w in iterator.workers]) == []
    finally:
        kill_workers(iterator)


def test_exception_without_workers_is_the_original():
    with pytest.raises(ValueError, match="cannot decode sample number 3"):
        for _ in DataLoader(Numbers(6, fail_at=3), batch_size=2):
            pass


def _failing_collate(samples):
    raise KeyError("collate is broken")


@pytest.mark.timeout(60)
def test_collate_fn_exception_in_a_worker():
    iterator = iter(DataLoader(Numbers(4), batch_size=2, num_workers=2, collate_fn=_failing_collate))
    try:
        with pytest.raises(WorkerError, match="(?s)KeyError.*collate is broken"):
            next(iterator)
    finally:
        kill_workers(iterator)


def _failing_init(worker_id):
    if worker_id == 1:
        raise OSError("no such file: worker-1.cfg")


@pytest.mark.timeout(60)
def test_worker_init_fn_exception():
    iterator = iter(DataLoader(Numbers(8), batch_size=2, num_workers=2, worker_init_fn=_failing_init))
    try:
        with pytest.raises(WorkerError, match="(?s)worker 1.*no such file: worker-1.cfg"):
            for _ in iterator:
                pass
    finally:
        kill_workers(iterator)


# ----------------------------------------------------------------------------- deaths and timeouts

@pytest.mark.timeout(60)
def test_a_killed_worker_is_detected_quickly():
    iterator = iter(DataLoader(Numbers(400, sleep=0.02), batch_size=2, num_workers=2))
    try:
        next(iterator)
        victim = iterator.workers[1]
        os.kill(victim.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerError) as caught:
            for _ in iterator:
                pass
        elapsed = time.monotonic() - start
        assert elapsed < 5, f"the death of a worker took {elapsed:.1f} s to notice"
        assert "worker 1" in str(caught.value)
        assert str(victim.pid) in str(caught.value)
        assert "SIGKILL" in str(caught.value)
        assert wait_until_gone([w.pid for w in iterator.workers]) == []
    finally:
        kill_workers(iterator)


@pytest.mark.timeout(60)
def test_timeout_raises_when_a_sample_is_too_slow():
    iterator = iter(DataLoader(Numbers(6, sleep_at=4), batch_size=2, num_workers=1, timeout=0.5))
    try:
        assert int(next(iterator).numpy()[0, 0]) == 0
        assert int(next(iterator).numpy()[0, 0]) == 2
        start = time.monotonic()
        with pytest.raises(WorkerError, match="timed out") as caught:
            next(iterator)
        elapsed = time.monotonic() - start
        assert isinstance(caught.value, RuntimeError)
        assert 0.4 < elapsed < 1.9, f"timeout=0.5 raised after {elapsed:.2f} s"
    finally:
        kill_workers(iterator)


@pytest.mark.timeout(60)
def test_a_slow_sample_within_the_timeout_is_fine():
    batches = [b.numpy()[:, 0].tolist() for b in DataLoader(Numbers(4, sleep=0.1), batch_size=2, num_workers=2,
                                                            timeout=3)]
    assert batches == [[0, 1], [2, 3]]


# ----------------------------------------------------------------------------- shared memory and processes

@pytest.mark.timeout(60)
def test_normal_completion_frees_everything():
    before = segments()
    iterator = iter(DataLoader(Numbers(9), batch_size=2, num_workers=2))
    try:
        assert segments() - before, "slots exist while iterating"
        assert sum(1 for _ in iterator) == 5
        assert segments() - before == set(), "slots freed at the end of the epoch, without waiting for collection"
        assert wait_until_gone([w.pid for w in iterator.workers]) == []
    finally:
        kill_workers(iterator)


@pytest.mark.timeout(60)
def test_break_then_del_frees_everything_and_the_last_batch_stays_readable():
    before = segments()
    iterator = iter(DataLoader(Numbers(40), batch_size=4, num_workers=2))
    pids = [w.pid for w in iterator.workers]
    try:
        for batch in iterator:
            if int(batch.numpy()[0, 0]) == 8:
                break
        assert segments() - before
        del iterator
        gc.collect()
        assert segments() - before == set()
        assert wait_until_gone(pids) == []
        # the batch still in hand views a slot whose name is gone: its memory must outlive the slot
        np.testing.assert_array_equal(batch.numpy(), np.repeat(np.arange(8, 12, dtype=np.float32)[:, None], 4, 1))
    finally:
        kill_pids(pids)


@pytest.mark.timeout(60)
def test_break_out_of_a_for_loop_over_the_loader_frees_on_collection():
    before = segments()
    for _ in DataLoader(Numbers(40), batch_size=4, num_workers=2):
        break
    gc.collect()
    assert segments() - before == set()


class WhoAmI(Dataset):
    """Sample i is (i, pid of the process that fetched it)."""

    def __len__(self):
        return 40

    def __getitem__(self, index):
        return index, os.getpid()


@pytest.mark.timeout(60)
def test_an_exception_in_the_training_loop_frees_everything():
    before = segments()
    pids = set()
    try:
        with pytest.raises(ZeroDivisionError):
            for index, pid in DataLoader(WhoAmI(), batch_size=2, num_workers=2):
                pids.update(int(p) for p in pid.numpy())
                if len(pids) == 2:
                    1 / 0
        gc.collect()
        assert segments() - before == set()
        assert os.getpid() not in pids
        assert wait_until_gone(pids) == []
    finally:
        kill_pids(pids)


@pytest.mark.timeout(60)
def test_a_worker_error_frees_everything():
    """An uncaught worker error ends the loop; the iterator goes with it, and so do workers and slots."""
    before = segments()

    def train():
        for _ in DataLoader(Numbers(10, fail_at=5), batch_size=2, num_workers=2):
            pass

    raised = False
    try:
        train()
    except WorkerError:
        raised = True  # leaving the except block drops the traceback, the loop's frame and its iterator
    assert raised
    assert segments() - before == set(), "freed when the error is handled, without waiting for the gc"


@pytest.mark.timeout(60)
def test_a_killed_worker_frees_everything():
    before = segments()
    iterator = iter(DataLoader(Numbers(100, sleep=0.02), batch_size=2, num_workers=2))
    try:
        next(iterator)
        os.kill(iterator.workers[0].pid, signal.SIGKILL)
        with pytest.raises(WorkerError):
            for _ in iterator:
                pass
        assert segments() - before == set()
    finally:
        kill_workers(iterator)


@pytest.mark.timeout(60)
def test_persistent_workers_are_freed_on_close_and_collection():
    before = segments()
    loader = DataLoader(Numbers(10), batch_size=2, num_workers=2, persistent_workers=True)
    iterator = iter(loader)
    try:
        assert sum(1 for _ in iterator) == 5
        assert segments() - before, "persistent workers keep their slots between epochs"
        pids = [w.pid for w in iterator.workers]
        assert all(alive(pid) for pid in pids)
    finally:
        kill_workers(iterator)
    assert segments() - before == set()
    assert wait_until_gone(pids) == []


# ----------------------------------------------------------------------------- whole processes

SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from distrain.data import DataLoader, Dataset

    class Slow(Dataset):
        def __len__(self):
            return 10000

        def __getitem__(self, index):
            time.sleep(0.05)
            return np.full(4, index, np.float32)

    iterator = iter(DataLoader(Slow(), batch_size=2, num_workers=2))
    next(iterator)
    print("pids:", *[w.pid for w in iterator.workers], flush=True)
    print("started", flush=True)
    for batch in iterator:
        if {sleep_in_loop}:
            time.sleep(0.5)  # the training step: Ctrl-C lands here, outside the loader
""")


def _start(tmp_path, sleep_in_loop):
    return start_script(tmp_path / "slow_loader.py", SCRIPT.format(repo=REPO, sleep_in_loop=sleep_in_loop))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sleep_in_loop", [False, True], ids=["waiting-for-a-batch", "in-the-training-step"])
def test_ctrl_c_stops_workers_and_frees_shared_memory(tmp_path, sleep_in_loop):
    process = _start(tmp_path, sleep_in_loop)
    try:
        pids = read_until_started(process)["pids"]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        assert segments(process.pid), "the script's slots exist while it runs"
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, stderr = process.communicate(timeout=30)
        stderr = stderr.decode()
        assert process.returncode != 0
        assert "KeyboardInterrupt" in stderr
        assert "leaked" not in stderr, stderr
        assert wait_until_gone(pids) == [], "workers outlived Ctrl-C"
        assert segments(process.pid) == set()
    finally:
        kill_group(process)


@pytest.mark.timeout(60)
def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    process = _start(tmp_path, sleep_in_loop=False)
    try:
        pids = read_until_started(process)["pids"]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        assert wait_until_gone(pids, seconds=5) == [], "orphaned workers must notice and exit"
        # the main process could not unlink its slots; multiprocessing's resource tracker does,
        # once every process holding its pipe (the main and the workers) is gone
        assert wait_until_no_segments(process.pid) == set()
    finally:
        kill_group(process)


class FailsAtTwo(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        if index == 2:
            raise ValueError("sample 2 is unreadable")
        return np.float32(index)


@pytest.mark.timeout(60)
def test_a_caught_sample_error_lets_the_epoch_go_on_like_num_workers_0():
    before = segments()
    seen = []
    iterator = iter(DataLoader(FailsAtTwo(), batch_size=2, num_workers=2))
    try:
        while True:
            try:
                seen.append(next(iterator).numpy().tolist())
            except StopIteration:
                break
            except WorkerError as error:
                assert error.recoverable and "sample 2 is unreadable" in str(error)
                seen.append("error")
    finally:
        iterator.close()
    assert seen == [[0.0, 1.0], "error", [4.0, 5.0], [6.0, 7.0]]
    assert segments() == before


@pytest.mark.timeout(60)
def test_object_arrays_travel_pickled_instead_of_as_pointers():
    def to_strings(batch):
        return np.array([str(float(x)) for x in batch], dtype=object)

    batches = list(DataLoader(FailsAtTwo(), batch_size=2, sampler=[0, 1, 3, 4], collate_fn=to_strings, num_workers=2))
    assert [b.tolist() for b in batches] == [["0.0", "1.0"], ["3.0", "4.0"]]


@pytest.mark.timeout(60)
def test_a_failed_worker_start_leaves_no_shared_memory():
    import pickle

    before = segments()
    loader = DataLoader(FailsAtTwo(), batch_size=2, num_workers=2, multiprocessing_context="spawn",
                        collate_fn=lambda batch: batch)  # a lambda cannot be sent to a spawned process
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        iter(loader)
    gc.collect()
    assert segments() == before
