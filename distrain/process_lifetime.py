"""Whether a process still runs, and processes that end with the process that started them.

The launcher, each rank's supervisor, the liveness hub and the data loader's workers all
need the same two things: to tell that a process on this machine has ended (a zombie,
dead but not yet reaped by its parent, has ended too), and to make a child die with its
parent even while the child is stuck in user code (Linux's PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def process_is_running(pid) -> bool:
    """True while process `pid` on this machine runs; False once it has ended, zombie or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel, which cannot tell a zombie
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # it exists, owned by someone else
        return True


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


def die_with_parent():
    """Ask Linux to SIGKILL this process when the thread that started it ends; False where that is not possible.

    The kernel ties the signal to the parent's *thread*: call it only in a process started
    from its parent's main thread (or a thread that lives as long as the process).
    """
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def die_with_parent_hook():
    """A `preexec_fn` for subprocess.Popen that makes the child die with us.

    ctypes is resolved here, in the parent, so that the forked child only makes one C call
    before exec (a child forked from a process with threads must not import or allocate).
    """
    prctl = _prctl()
    if prctl is None:
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
