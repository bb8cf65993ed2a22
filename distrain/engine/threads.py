"""How many CPU threads distrain's own array work may use, and the pool that runs it.

NumPy runs every elementwise operation on one thread (only its BLAS is threaded), while
PyTorch spreads elementwise kernels over all its threads. Where distrain's work splits
naturally into independent cache-sized blocks (the optimizer's blocked update, see
NOTE [ Optimizer chunks ]), it hands the blocks to a small pool of threads: NumPy
releases the GIL inside each operation, so the threads really run at once.

The count follows `distrain.set_num_threads(n)` (like `torch.set_num_threads`), else the
environment (DISTRAIN_NUM_THREADS, then OMP_NUM_THREADS, as a launcher running one rank
per core sets it), else the CPUs this process may run on.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

# what a launcher (one rank per core) and a loader worker (one thread) set for the native thread pools
# of the libraries a process loads after them: OpenMP's, OpenBLAS's, MKL's
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_lock = threading.Lock()
_threads = None
_pool = None


def _forget_pool_in_forked_child():
    """A forked child has none of the pool's threads (only the forking thread survives a fork):
    work handed to the inherited pool would wait forever, so the child starts a pool of its own."""
    global _lock, _pool
    _lock = threading.Lock()
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_forked_child)


def _from_environment():
    for variable in ("DISTRAIN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """The number of threads distrain's own parallel array work uses."""
    global _threads
    if _threads is None:
        _threads = _from_environment()
    return _threads


def set_num_threads(count: int) -> None:
    """Use `count` threads (>= 1) for distrain's own parallel array work from now on."""
    global _threads, _pool
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count!r}")
    with _lock:
        _threads = count
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None


def run_in_parallel(function, parts):
    """Call function(index, part) for every part, the first on this thread, the rest on the pool.

    Returns when all are done; the first exception raised by any part is re-raised.
    """
    global _pool
    if len(parts) == 1:
        function(0, parts[0])
        return
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(get_num_threads() - 1, 1), thread_name_prefix="distrain")
        pool = _pool
    futures = [pool.submit(function, index, part) for index, part in enumerate(parts[1:], start=1)]
    try:
        function(0, parts[0])
    finally:
        for future in futures:
            future.result()
