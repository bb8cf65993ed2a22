"""Loader workers compute on one thread: NumPy's BLAS, distrain's own pool, and what they start later.

NOTE [ One thread per loader worker ]
A DataLoader's workers run beside the training step, and the step already keeps every core
busy: NumPy's BLAS (OpenBLAS) runs a thread per core, and its helper threads busy-wait for
about 0.1 s after each call without giving the core up (they show no system time at all).
A worker that inherited that thread count and whose transform calls BLAS (a colour-mixing
matmul, a projection) starts such helpers of its own, and one worker then holds both cores
of a 2-core machine: with a 3x3 colour-mixing GEMM in the batch transform, an MLP step fed by
a 1-worker loader took 3.3x its in-memory time (the worker burnt 34 ms of CPU per 3 MB
batch), and 1.37x with the worker's BLAS on one thread (3 ms per batch). PyTorch's workers
run on one thread too (torch.set_num_threads(1)). So a worker, before worker_init_fn runs:
  - computes with NumPy's BLAS on one thread. A forked worker inherits the count from the
    DataLoader's process, which holds its BLAS at one thread while it forks the workers
    (`forked_workers_get_one_blas_thread`): setting the count in the forked worker instead
    would restart OpenBLAS's thread pool there (OpenBLAS stops it at every fork and restarts
    it when the count is next set or a split call comes), and the restarted helper
    busy-waits ~0.1 s: measured, 100 ms of CPU per worker start. A worker that loaded NumPy
    itself (spawn, forkserver) sets the count. Only NumPy's BLAS is touched, found through
    NumPy's own extension module; where none of the known entry points is found (Apple's
    Accelerate, say) nothing changes;
  - sets distrain's own thread count to 1 (distrain.set_num_threads);
  - sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to 1 for what it loads or
    starts from then on (a forked worker's NumPy read them long ago).
A worker_init_fn that wants more threads in its worker raises them itself.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os

from ..engine import threads
from ..engine.threads import THREAD_VARIABLES

# (get, set) thread count, as the BLAS builds NumPy ships with (scipy-openblas, 64-bit integers
# or not) or is built against (a system OpenBLAS, MKL's single dynamic library) name them
BLAS_THREAD_FUNCTIONS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
)


@functools.lru_cache(maxsize=None)
def numpy_blas_threads():
    """(get, set) for the thread count of the BLAS that NumPy calls, or None where none is found.

    Looked up through NumPy's extension module: a symbol lookup on a library's handle also
    searches the libraries it links, so this finds NumPy's BLAS and no other one.
    """
    try:
        from numpy._core import _multiarray_umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath
    try:
        library = ctypes.CDLL(_multiarray_umath.__file__)
    except OSError:
        return None
    for get_name, set_name in BLAS_THREAD_FUNCTIONS:
        get, set_ = getattr(library, get_name, None), getattr(library, set_name, None)
        if get is not None and set_ is not None:
            get.argtypes, get.restype = [], ctypes.c_int
            set_.argtypes, set_.restype = [ctypes.c_int], None
            return get, set_
    return None


@contextlib.contextmanager
def forked_workers_get_one_blas_thread():
    """While forking loader workers, NumPy's BLAS in this process on one thread, then as it was.

    See NOTE [ One thread per loader worker ]. This process's pool is running here, so the
    change is only a number; the fork stops the pool as every fork does, and restoring the
    count restarts it, as this process's next BLAS call would have. A BLAS call that another
    thread makes meanwhile runs on one thread.
    """
    blas = numpy_blas_threads()
    count = blas[0]() if blas is not None else 1
    if count == 1:
        yield
        return
    blas[1](1)
    try:
        yield
    finally:
        blas[1](count)


def use_one_thread():
    """Make this process (a loader worker) compute on one thread; see NOTE [ One thread per loader worker ]."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    threads.set_num_threads(1)
    blas = numpy_blas_threads()
    if blas is not None and blas[0]() != 1:  # a worker that loaded NumPy itself (spawn, forkserver)
        blas[1](1)
