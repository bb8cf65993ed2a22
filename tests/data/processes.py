"""Helpers for the data tests that watch processes and shared memory.

Shared-memory slots are named `distrain_<main pid>_...` (distrain/data/shared_slots.py), so
a leak is visible in /dev/shm. Scripts run in their own session (start_new_session), so
whatever they leave behind can be killed as a group in a test's `finally`.
"""
import os
import select
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHM = "/dev/shm"


def segments(pid=None):
    """This (or `pid`'s) process's distrain shared-memory segments."""
    prefix = f"distrain_{os.getpid() if pid is None else pid}_"
    return {name for name in os.listdir(SHM) if name.startswith(prefix)}


def alive(pid):
    """Whether process `pid` is running (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_until_gone(pids, seconds=5.0):
    """The pids still alive after waiting up to `seconds` for all of them to end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def wait_until_no_segments(pid, seconds=5.0):
    """`pid`'s segments still in /dev/shm after waiting up to `seconds` for them to go."""
    deadline = time.monotonic() + seconds
    while segments(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return segments(pid)


def kill_workers(iterator):
    """Last resort in a finally: close the iterator, SIGKILL any worker still running."""
    try:
        iterator.close()
    finally:
        for process in iterator.workers:
            if process.is_alive():
                process.kill()


def kill_pids(pids):
    """Last resort in a finally, for workers whose iterator the test let go of."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def start_script(path, text):
    """Write `text` to `path` and run it with this Python in a new session, stdout and stderr piped."""
    path.write_text(text)
    return subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=str(path.parent))


def read_until_started(process, seconds=30):
    """The `name: numbers` lines the script printed, as {name: [int]}, once it prints "started"."""
    deadline = time.monotonic() + seconds
    buffered = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            if b"started\n" in buffered:
                return {line.split(":")[0]: [int(n) for n in line.split(":")[1].split()]
                        for line in buffered.decode().splitlines() if ":" in line}
    raise AssertionError(f"the script did not start: {buffered!r}, stderr: {_stderr_so_far(process)!r}")


def _stderr_so_far(process):
    if process.poll() is None:
        return b"(still running)"
    return process.stderr.read()


def kill_group(process):
    """Kill whatever the script left in its session (workers, resource tracker) and close its pipes."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)
    process.stdout.close()
    process.stderr.close()
