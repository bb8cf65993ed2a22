"""`spawn` and `start_processes`: run fn(i, *args) in N processes and watch them, as torch.multiprocessing does.

The parent waits on the children's sentinels (they become ready when a child ends, so a
dead child can never hang the wait). The first child to fail ends the job: the others get
SIGTERM, then SIGKILL after a grace period, and the parent raises ProcessRaisedException
(fn raised: the child's traceback and index) or ProcessExitedException (the child exited
with a nonzero status or was killed by a signal: index, pid, status or signal name).
What the children do on their side is NOTE [ spawn's children ] in child.py.

Example::

    >>> def train(rank, world_size):
    ...     distrain.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    ...
    >>> distrain.multiprocessing.spawn(train, args=(2,), nprocs=2)
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref

from ..errors import ArgumentError, DistrainError
from .child import run_child

DEFAULT_GRACE_PERIOD = 30.0  # seconds a terminated child gets to exit before SIGKILL (PyTorch's too)


class ProcessException(DistrainError):
    """A process started by spawn/start_processes failed; `error_index` and `error_pid` name it."""

    def __init__(self, msg, error_index, error_pid):
        super().__init__(msg)
        self.msg = msg
        self.error_index = error_index
        self.error_pid = error_pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.error_pid)


class ProcessRaisedException(ProcessException):
    """fn raised an exception in a child; the message holds the child's traceback."""


class ProcessExitedException(ProcessException):
    """A child exited with a nonzero status, or was killed by `signal_name`, without an exception from fn."""

    def __init__(self, msg, error_index, error_pid, exit_code, signal_name=None):
        super().__init__(msg, error_index, error_pid)
        self.exit_code = exit_code
        self.signal_name = signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.error_pid, self.exit_code, self.signal_name)


class ProcessContext:
    """The processes of one start_processes call; `join()` waits for them and reports the first failure."""

    def __init__(self, processes, error_files, error_directory):
        self.processes = processes
        self.error_files = error_files
        self.sentinels = {process.sentinel: index for index, process in enumerate(processes)}
        # removed once joined, else when this context is dropped or at exit (join=False never joined, Ctrl-C)
        self._error_directory = weakref.finalize(self, shutil.rmtree, error_directory, True)

    def pids(self):
        return [int(process.pid) for process in self.processes]

    def join(self, timeout=None, grace_period=None):
        """Wait up to `timeout` seconds (None: until something happens) for the processes.

        Returns True when all have ended successfully, False when some still run after
        `timeout`. The first that failed raises ProcessRaisedException/ProcessExitedException
        in this process, after the others are terminated (SIGTERM, then SIGKILL after
        `grace_period` seconds, default 30).
        """
        if not self.sentinels:
            return True
        ready = multiprocessing.connection.wait(list(self.sentinels), timeout=timeout)
        failed = None
        for sentinel in ready:
            index = self.sentinels.pop(sentinel)
            process = self.processes[index]
            process.join()
            if process.exitcode != 0:
                failed = index
                break
        if failed is None:
            if not self.sentinels:
                self._remove_error_directory()
                return True
            return False
        self._terminate_all(DEFAULT_GRACE_PERIOD if grace_period is None else grace_period)
        try:
            raise self._failure(failed)
        finally:
            self._remove_error_directory()

    def _terminate_all(self, grace_period):
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + grace_period
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0))
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join()
        self.sentinels.clear()

    def _failure(self, index):
        process = self.processes[index]
        error_file = self.error_files[index]
        if os.path.exists(error_file):
            with open(error_file, encoding="utf-8", errors="replace") as report:
                trace = report.read()
            return ProcessRaisedException(f"\n\n-- Process {index} (pid {process.pid}) terminated with the following "
                                          f"error:\n{trace}", index, process.pid)
        exit_code = process.exitcode
        if exit_code < 0:
            name = signal.Signals(-exit_code).name
            return ProcessExitedException(f"process {index} (pid {process.pid}) terminated with signal {name}",
                                          index, process.pid, exit_code, name)
        return ProcessExitedException(f"process {index} (pid {process.pid}) terminated with exit code {exit_code}",
                                      index, process.pid, exit_code)

    def _remove_error_directory(self):
        self._error_directory()  # a finalizer runs at most once


SpawnContext = ProcessContext  # PyTorch's older name


def start_processes(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Start `nprocs` processes running fn(i, *args), i = 0..nprocs-1, with `start_method`.

    Args:
        fn: a function defined at the top level of a module (so "spawn" can find it again).
        args: the arguments after the index; shared tensors in them arrive as shared memory.
        join: True: wait for all of them (see ProcessContext.join) and return None;
            False: return the ProcessContext at once.
        daemon: start them as daemonic processes (they cannot have children of their own).
        start_method: "spawn", "fork" or "forkserver".

    The children get the job secret of $DISTRAIN_PS_SECRET: when neither it nor
    $DISTRAIN_PS_SECRET_FILE is set, a fresh one is put into this process's environment
    first, so that the processes can run an authenticated rendezvous without a launcher.
    """
    if not isinstance(nprocs, int) or nprocs < 1:
        raise ArgumentError(f"nprocs must be a positive int, got {nprocs!r}")
    if start_method not in multiprocessing.get_all_start_methods():
        raise ArgumentError(f"start_method {start_method!r} is not available here; use one of "
                            f"{multiprocessing.get_all_start_methods()}")
    _provide_job_secret()
    context = multiprocessing.get_context(start_method)
    error_directory = tempfile.mkdtemp(prefix="distrain-spawn-")
    error_files = [os.path.join(error_directory, f"process-{index}.error") for index in range(nprocs)]
    from_main_thread = threading.current_thread() is threading.main_thread()
    processes = []
    try:
        for index in range(nprocs):
            process = context.Process(target=run_child, daemon=daemon,
                                      args=(fn, index, tuple(args), error_files[index], os.getpid(), from_main_thread))
            process.start()
            processes.append(process)
    finally:  # a process that could not start (fn not picklable): the context still owns the directory
        process_context = ProcessContext(processes, error_files, error_directory)
    if not join:
        return process_context
    while not process_context.join():
        pass
    return None


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """start_processes with the "spawn" start method by default (PyTorch's `mp.spawn`)."""
    return start_processes(fn, args, nprocs, join, daemon, start_method)


def _provide_job_secret():
    """Put a fresh job secret into the environment the children inherit, unless one is set."""
    from ..comm.ps import protocol

    if not os.environ.get(protocol.SECRET_ENVIRONMENT_VARIABLE) and \
            not os.environ.get(protocol.SECRET_FILE_ENVIRONMENT_VARIABLE):
        os.environ[protocol.SECRET_ENVIRONMENT_VARIABLE] = protocol.new_secret()
