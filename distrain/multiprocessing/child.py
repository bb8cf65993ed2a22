"""What runs first in each process `start_processes` starts: the tie to the parent and the error report.

NOTE [ spawn's children ]
- Dying with the parent: a child must not outlive the program that started it (a killed
  `python train.py` must not leave workers holding the CPU or a port). Where Linux allows,
  the child asks for SIGKILL when the parent's starting thread ends (PR_SET_PDEATHSIG;
  asked from inside the child, since "spawn" children cannot run a preexec_fn), and checks
  that the parent did not end before the request (not under "forkserver", whose children
  are the server's). Everywhere, a daemon thread waits on
  multiprocessing's parent sentinel (a pipe the parent holds open) and kills the child
  when it closes, which also covers a parent started from a thread that ends early.
- Errors: an exception in fn is written, as traceback text, to the child's error file
  (written to a temporary name, then renamed, so the parent reads it whole), and the child
  exits with status 1. The parent reads text, never unpickles what a child wrote.
  A KeyboardInterrupt (the parent's terminal sent SIGINT to the whole group) exits quietly.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback

from ..process_lifetime import die_with_parent


def tie_to_parent(parent_pid, started_from_main_thread):
    """Make this process end when its parent does (NOTE [ spawn's children ])."""
    # under "forkserver" the forking parent is the server, not the program: the watcher alone ties us
    if started_from_main_thread and os.getppid() == parent_pid and die_with_parent() and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)  # the parent ended before the request took effect
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def wait_for_parent():
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait_for_parent, name="distrain-parent-watch", daemon=True).start()


def run_child(fn, index, args, error_file, parent_pid, started_from_main_thread):
    """The target of every process start_processes starts: fn(index, *args), errors to error_file."""
    tie_to_parent(parent_pid, started_from_main_thread)
    try:
        fn(index, *args)
    except KeyboardInterrupt:
        pass
    except Exception:
        temporary = f"{error_file}.partial"
        with open(temporary, "w", encoding="utf-8") as report:
            report.write(traceback.format_exc())
        os.replace(temporary, error_file)
        sys.exit(1)
