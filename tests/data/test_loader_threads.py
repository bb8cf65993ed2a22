"""Loader workers compute on one thread (NOTE [ One thread per loader worker ] in distrain/data/worker_threads.py).

Oracles for BLAS: in a forked worker, what the BLAS does: the native threads that a matmul
big enough to be split leaves behind (OpenBLAS starts its helpers for the first such call,
or when its count is set after a fork), counted from /proc; the same count must see the
helper once a worker_init_fn allows two threads. In a spawned worker, which loaded only
NumPy's BLAS, threadpoolctl's report of it. The main process's counts (threadpoolctl's
report, distrain's, the environment) must not change.
"""
import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import distrain
from distrain.data import DataLoader, Dataset
from distrain.data.worker_threads import THREAD_VARIABLES

from .processes import kill_workers


class ThreadsSeen(Dataset):
    """Sample i, as seen in the process that fetches it: [native threads after a matmul (BLAS's
    helpers), the most threads threadpoolctl reports for a BLAS, distrain.get_num_threads(),
    then each of THREAD_VARIABLES (-1: unset)]."""

    def __len__(self):
        return 3

    def __getitem__(self, index):
        matrix = np.ones((256, 256))
        assert (matrix @ matrix)[0, 0] == 256  # 16.8M multiply-adds: OpenBLAS splits it over its threads
        helpers = len(os.listdir("/proc/self/task")) - threading.active_count()  # native threads: BLAS's
        variables = [int(os.environ.get(variable, -1)) for variable in THREAD_VARIABLES]
        blas = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return np.array([helpers, blas, distrain.get_num_threads(), *variables])


def main_process_counts():
    return ([pool["num_threads"] for pool in threadpool_info()], distrain.get_num_threads(),
            [os.environ.get(variable) for variable in THREAD_VARIABLES])


def fetch_all(loader, columns):
    iterator = iter(loader)
    try:
        return [[sample.numpy().tolist()[column] for column in columns] for sample in iterator]
    finally:
        kill_workers(iterator)


HELPERS, BLAS, DISTRAIN, *VARIABLES = range(6)


@pytest.mark.timeout(60)
def test_forked_workers_compute_on_one_thread_and_start_no_blas_helper():
    with threadpool_limits(limits=2, user_api="blas"):  # two threads to inherit, even on one core
        before = main_process_counts()
        seen = fetch_all(DataLoader(ThreadsSeen(), batch_size=None, num_workers=2), [HELPERS, DISTRAIN, *VARIABLES])
        after = main_process_counts()
    assert seen == [[0, 1, 1, 1, 1]] * 3
    assert after == before
    assert 2 in before[0]


@pytest.mark.timeout(120)
def test_spawned_workers_set_their_blas_to_one_thread():
    with threadpool_limits(limits=2, user_api="blas"):
        before = main_process_counts()
        seen = fetch_all(DataLoader(ThreadsSeen(), batch_size=None, num_workers=1, multiprocessing_context="spawn"),
                         [BLAS, DISTRAIN, *VARIABLES])
        after = main_process_counts()
    assert seen == [[1, 1, 1, 1, 1]] * 3
    assert after == before


@pytest.mark.timeout(60)
def test_worker_init_fn_runs_after_the_limit_and_may_raise_it():
    def more_threads(worker_id):
        threadpool_limits(limits=2, user_api="blas")
        distrain.set_num_threads(3)

    seen = fetch_all(DataLoader(ThreadsSeen(), batch_size=None, num_workers=1, worker_init_fn=more_threads),
                     [HELPERS, BLAS, DISTRAIN, *VARIABLES])
    # the BLAS at two threads, and the measurement sees its helper (at least one native thread: in a full test
    # run a worker may hold another native thread besides, so the count is not exact here)
    assert [row[1:] for row in seen] == [[2, 3, 1, 1, 1]] * 3, seen
    assert all(row[0] >= 1 for row in seen), seen
