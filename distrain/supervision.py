"""Watching a rank's process from outside: its output in whole lines, its exact ending, one verdict line.

A process cannot report its own SIGKILL or `os._exit`, and an MPI launcher reports them
poorly (MPICH's mpiexec says "exit code 9" for a SIGKILL and keeps waiting for the other
ranks when one calls `sys.exit(2)` after MPI_Finalize). So each rank is run as a child of
a small supervising process that sees exactly how it ended:

- under `python -m distrain.launch -n N --backend ps|nccl`, the launcher itself (spawn.py);
- under an MPI launcher (`python -m distrain.launch -n N`, or `mpirun -n N python -m
  distrain.launch ...`), `supervise_rank`: mpiexec starts the supervisor, the supervisor
  starts the rank, which inherits the MPI launcher's environment and descriptors and so
  joins the job as usual.

The supervisor copies the rank's output through `OutputRelay`: every piece that ends in
a newline or a carriage return (tqdm's updates) goes out in one write(2), so lines of
different ranks never interleave mid-line (mpiexec's "[r] " prefix then lands once per
piece). When the rank ends badly the supervisor prints one line naming the rank, its pid
and host, and how it ended (exit code n, or the signal), adding "its traceback is above"
only when the rank printed one, and exits with the rank's code, 128+n for signal n, as a
shell does. Under MPI it then exits without MPI_Finalize, which makes mpiexec stop every
rank at once. A rank's shared-memory files (MPICH's, the data loader's) that a killed rank
could not remove are removed by its supervisor (`SharedMemoryWatch`).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from .process_lifetime import die_with_parent_hook

TRACEBACK_START = b"Traceback (most recent call last):"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
SHM_DIRECTORY = "/dev/shm/"
# The segments a killed rank leaves there and its supervisor may remove: MPICH's ("mpich_shm_..."),
# Open MPI's ("vader_segment.", "sm_segment.") and the data loader's slots (shared_slots.py). Nothing
# else a rank maps in /dev/shm is its own: a data set kept on the RAM disk, another program's segment.
LEFTOVER_NAME = re.compile(r"mpich_shm_[^/]+|vader_segment\.[^/]+|sm_segment\.[^/]+|distrain_\d+_[0-9a-f]{8}_\d+")
SHM_SCAN_SECONDS = 1.0  # how often a supervisor looks at its rank's mappings, after the first SHM_EAGER_SECONDS
SHM_EAGER_SECONDS, SHM_EAGER_SCAN_SECONDS = 10.0, 0.1  # MPI maps its segment at start: look often then
VERDICT_VARIABLE = "DISTRAIN_VERDICT_FILE"
QUIET_GRACE_SECONDS = 3.0  # how long a quiet rank's supervisor leaves the reporting rank to name a lost one
LOST_PEER_ERROR = "PeerLostError"  # comm/base.py: how a rank that failed only because a peer had gone says goodbye
NOTE_FD_VARIABLE = "DISTRAIN_SUPERVISOR_NOTE_FD"  # the pipe a rank tells its supervisor why it ends
_PIECE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r)")  # a line, or a carriage-return update


def describe_ending(code):
    """'exited with code 3' or 'was killed by signal SIGKILL' for a Popen return code."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"
    return f"exited with code {code}"


def exit_status(code):
    """The launcher's exit code for a rank's Popen return code: the code, or 128+n for signal n (as a shell does)."""
    return 128 - code if code < 0 else code


def verdict(rank, pid, host, code, traceback_seen, extra=""):
    """The one line that says which rank ended the job, and how."""
    line = f"distrain.launch: rank {rank} (pid {pid} on {host}) {describe_ending(code)}"
    if traceback_seen:
        line += "; its traceback is above"
    return line + extra + "\n"


class OutputRelay(threading.Thread):
    """Copies one pipe to `stream`, one whole line (or carriage-return update) per write, behind `prefix`.

    Pieces end at b"\\n" or b"\\r"; a piece longer than `chunk` bytes goes out in parts, and
    what is left when the pipe closes gets a newline. `lock`, when several relays share a
    stream, keeps their writes apart. `traceback_seen` turns True once a Python traceback
    passes through.
    """

    def __init__(self, pipe, stream, prefix=b"", lock=None, chunk=65536):
        super().__init__(name="distrain-output-relay", daemon=True)
        self.pipe = pipe
        self.fd = _file_descriptor(stream)
        self.stream = stream
        self.prefix = prefix
        self.lock = lock or threading.Lock()
        self.chunk = chunk
        self.traceback_seen = False
        self.broken = False

    def run(self):
        pending = b""
        read = self.pipe.raw.read if hasattr(self.pipe, "raw") else self.pipe.read
        while True:
            data = read(self.chunk)
            if not data:
                break
            pending += data
            end = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
            for piece in _PIECE.findall(pending[:end]):
                self._emit(piece)
            pending = pending[end:]
            while len(pending) >= self.chunk:
                self._emit(pending[:self.chunk])
                pending = pending[self.chunk:]
        if pending:
            self._emit(pending + b"\n")
        self.pipe.close()

    def _emit(self, piece):
        if TRACEBACK_START in piece:
            self.traceback_seen = True
        if self.broken:
            return  # our output is gone (`| head`): keep draining, or the rank would block writing
        with self.lock:
            try:
                if self.fd is not None:
                    data = self.prefix + piece
                    while data:
                        data = data[os.write(self.fd, data):]
                else:  # a stream without a descriptor: text (io.StringIO, a notebook's) or binary (io.BytesIO)
                    data = self.prefix + piece
                    self.stream.write(data.decode(errors="replace") if isinstance(self.stream, io.TextIOBase) else data)
                    self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.broken = True


def _file_descriptor(stream):
    """The descriptor behind `stream`, or None for one without (io.StringIO, pytest's capsys, a notebook's output)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return None


class SharedMemoryWatch:
    """Remembers the MPI and loader segments a process has mapped, so that they can be removed after it is killed.

    MPICH and the data loader unlink their shared memory when they end normally; a rank
    killed by a signal or by `os._exit` cannot. Reading /proc/PID/maps once a second is
    how its supervisor learns the names; only those of segments such libraries make
    (LEFTOVER_NAME) are kept, so a user's file that the rank merely mapped is never removed.
    """

    def __init__(self, pid):
        self.pid = pid
        self.paths = set()
        self.started = time.monotonic()
        self.next_scan = 0.0

    def scan(self):
        now = time.monotonic()
        if now < self.next_scan:
            return
        eager = now - self.started < SHM_EAGER_SECONDS
        self.next_scan = now + (SHM_EAGER_SCAN_SECONDS if eager else SHM_SCAN_SECONDS)
        try:
            with open(f"/proc/{self.pid}/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    path = line.rstrip("\n").split(None, 5)[-1] if line.count(" ") >= 5 else ""
                    if path.startswith(SHM_DIRECTORY) and LEFTOVER_NAME.fullmatch(path[len(SHM_DIRECTORY):]):
                        self.paths.add(path)
        except OSError:
            pass  # gone already, or no /proc (macOS)

    def remove_leftovers(self):
        """Unlink the files it saw that still exist; returns their names."""
        removed = []
        for path in sorted(self.paths):
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(path)
        return removed


def leave_note(note):
    """Tell this rank's supervisor, if it has one, what to print when this rank ends (see `note_for_lost_peer`)."""
    descriptor = os.environ.get(NOTE_FD_VARIABLE)
    if descriptor and descriptor.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(descriptor), note.encode()[:4000])


def note_for_lost_peer(rank, lost):
    """The note of a rank that fails only because peers in `lost` (liveness entries by rank) died or left.

    "report<TAB>line" or "quiet<TAB>line", the line naming the rank that went first.
    Several ranks usually fail that way at once, each in its own wait, and one line should
    name the rank that started it: under MPI, where each rank has its own supervisor, the
    lowest rank that did not start it reports it and the others stay quiet (every one of
    them can tell: a rank that fails this way says goodbye as "raised PeerLostError", so the
    others know it for a consequence, not a cause, whenever they hear of it). The ps
    launcher sees every rank and prints the line of the first that failed. A quiet rank's
    supervisor still prints the line after QUIET_GRACE_SECONDS if the job is still there
    then: the reporting rank may be busy outside any collective and never fail.
    """
    causes = {other: entry for other, entry in lost.items()
              if not str(entry.get("lost", "")).startswith(f"raised {LOST_PEER_ERROR}")} or lost
    reporter = not any(other not in causes for other in range(rank))
    first = min(causes, key=lambda r: causes[r].get("lost_at") or 0)
    entry = causes[first]
    return (f"{'report' if reporter else 'quiet'}\tdistrain.launch: rank {first} (pid {entry.get('pid')} on "
            f"{entry.get('host')}) {entry.get('lost')}, and the ranks waiting for it could not go on (rank {rank}'s "
            "traceback is above)\n")


SAID = "said"  # the kind of note of a rank that printed why it ends (a usage error): no verdict line after it


def say_ending_was_explained():
    """This rank has printed, in one line, why it ends (e.g. a configuration error): its supervisor adds nothing."""
    leave_note(f"{SAID}\t")


def note_pipe(environment):
    """(read end, write end, environment with NOTE_FD_VARIABLE) for one rank's note (`leave_note`)."""
    read_end, write_end = os.pipe()
    return read_end, write_end, {**environment, NOTE_FD_VARIABLE: str(write_end)}


def read_note(descriptor):
    """What a rank left in its note pipe (after it has ended), closing the pipe; '' if nothing."""
    os.set_blocking(descriptor, False)
    try:
        return os.read(descriptor, 4096).decode(errors="replace")
    except (BlockingIOError, OSError):
        return ""
    finally:
        os.close(descriptor)


def supervise_rank(rank, argv, environment):
    """Run `argv` as rank `rank` under this process's watch (module docstring); returns our exit code."""
    note_read, note_write, environment = note_pipe(environment)
    os.set_inheritable(note_write, True)  # close_fds=False: the MPI launcher's descriptors (PMI_FD) pass on too
    child = subprocess.Popen(argv, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=False,
                             preexec_fn=die_with_parent_hook())
    os.close(note_write)
    relays = [OutputRelay(child.stdout, sys.stdout), OutputRelay(child.stderr, sys.stderr)]
    for relay in relays:
        relay.start()
    stopped_by = []

    def forward(signum, frame):
        stopped_by.append(signum)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    shared_memory = SharedMemoryWatch(child.pid)
    try:
        while child.poll() is None:
            shared_memory.scan()
            time.sleep(0.02)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    code = child.returncode
    for relay in relays:
        relay.join(timeout=5)
    if code != 0:
        shared_memory.remove_leftovers()
    kind, _, lost_line = read_note(note_read).partition("\t")
    if code != 0 and kind == "quiet":  # the reporting rank names the lost one; should it be busy, we do, later
        deadline = time.monotonic() + QUIET_GRACE_SECONDS
        while not stopped_by and time.monotonic() < deadline:  # the job torn down meanwhile: it was named
            time.sleep(0.05)
    if code != 0 and not stopped_by:  # stopped from outside: not the culprit
        # a rank that failed because another had gone names that one
        line = lost_line or verdict(rank, child.pid, socket.gethostname(), code, relays[1].traceback_seen)
        if kind == SAID:
            line = ""
        sys.stderr.flush()
        os.write(2, line.encode())
        record_verdict(environment.get(VERDICT_VARIABLE), exit_status(code), line)
    return exit_status(code)


def record_verdict(path, code, line):
    """Leave the first failing rank's exit code and line where the launcher that started mpiexec looks.

    mpiexec's own exit code is not the failing rank's (it reports the signal it used to stop
    the others), so `python -m distrain.launch -n N` reads this instead. The first rank to
    write wins (O_EXCL); without the variable (a plain mpirun) nothing is written.
    """
    if not path:
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{code}\n{line}")


def read_verdict(path):
    """(exit code, line) that a failing rank's supervisor recorded, or None."""
    try:
        with open(path, encoding="utf-8") as handle:
            code, line = handle.read().split("\n", 1)
        return int(code), line
    except (OSError, ValueError):
        return None


__all__ = ["OutputRelay", "SharedMemoryWatch", "describe_ending", "exit_status", "leave_note",
           "note_for_lost_peer", "note_pipe", "read_note", "read_verdict", "record_verdict",
           "say_ending_was_explained", "supervise_rank", "verdict"]
