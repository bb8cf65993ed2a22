"""Timeline: one rank's events, streamed to its own part file as Chrome-trace JSON lines.

Events are Chrome trace "X" (complete) events: `ts` and `dur` in whole microseconds of
the wall clock, `pid` the rank + 1 (Perfetto gives pid 0, the Linux kernel's idle
process, special handling: google/perfetto#394 advises starting at 1), named "rank N" by
a process_name metadata event. Rows (`tid`, from 1):

- one per Python thread that records spans: compute spans nest there by construction
  (a `with` inside a `with`);
- "comm" rows for the events that overlap compute and each other, such as the gradient
  buckets in flight during backward: each such event goes to the first comm row whose
  last event ended before it began, so no row holds two overlapping events (Chrome and
  Perfetto draw the events of one row as a stack and need them nested).

Clock: `time.time_ns()` read once, at construction, plus the monotonic
`time.perf_counter_ns()` since then, so durations never go negative when the wall clock
is stepped, and ranks on one machine (one clock) line up to a few microseconds. Ranks on
several machines line up only as well as their clocks agree (NTP: typically well under a
millisecond on a LAN, worse without it); compare durations across machines, not instants.
Whole microseconds keep `ts` exact in a JSON double (a float with a fraction of a
microsecond would round at today's epoch), so nesting survives the trip.

NOTE [ Timeline part files ]
Each rank writes `PATH.rankR.part` beside the trace's final PATH: one JSON object per
line, each a Chrome trace event (the metadata naming the process and rows included), and
once the rank has closed its timeline, a last line {"distrain_timeline": "closed",
"rank": R, "events": N} counting the event lines before it. Lines are written in
batches, every FLUSH_EVENTS events or FLUSH_SECONDS (checked as events arrive) and at
close, so memory stays bounded and a rank that crashes leaves its part with all but the
last second of its events. merge.py waits for every rank's closing line, up to a
timeout, so the ranks need no other signal between them; a part without one is merged
as far as its lines are whole, with a warning naming the rank.
"""
from __future__ import annotations

import json
import os
import threading
import time
import warnings

from ..errors import ArgumentError, DistrainError

FLUSH_EVENTS = 256
FLUSH_SECONDS = 1.0
CLOSED_KEY = "distrain_timeline"
_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps(separators=...) builds one per call
LANES_SORT_AFTER = 10_000  # comm rows are shown below the threads' rows, whichever recorded first


class TimelineError(DistrainError, OSError):
    """A timeline's part or trace file cannot be written (no such directory, no permission)."""


class TimelineWarning(UserWarning):
    """A timeline is incomplete: a rank's part is missing or unfinished, or could not be written."""


def part_path(path, rank):
    """Where rank `rank` streams its events for the trace at `path` (NOTE [ Timeline part files ])."""
    return f"{os.path.abspath(os.fspath(path))}.rank{rank}.part"


_active = None  # the process-wide current timeline (see current())


def current():
    """The timeline this process records into, or None (the default: nothing is recorded)."""
    return _active


def activate(timeline):
    """Make `timeline` (a Timeline, or None to stop) the one this process's GradientReducers record into."""
    global _active
    if timeline is not None and not isinstance(timeline, Timeline):
        raise ArgumentError(f"timeline.activate takes a Timeline or None, got {type(timeline).__name__}")
    _active = timeline


class Timeline:
    """The events of rank `rank` (of `world_size`) for the Chrome-trace/Perfetto file at `path`.

    Nothing goes to `path` itself: each rank streams to its own part file beside it, and
    `merge(path, world_size)` (rank 0, once every rank has closed) writes the one trace.

    Example::

        timeline = Timeline("run/timeline.json", rank, world_size)
        activate(timeline)                         # DDP's bucket allreduces are recorded too
        for step, (x, y) in enumerate(loader):
            with timeline.span("forward", "forward", {"step": step}):
                loss = loss_fn(model(x), y)
            with timeline.span("backward", "backward"):
                loss.backward()
        timeline.close()
        comm.barrier()
        if rank == 0:
            merge("run/timeline.json", world_size)

    Events recorded after `close()` are dropped. A forked child (a data-loader worker)
    records nothing into its parent's timeline. Safe to use from several threads.
    """

    def __init__(self, path, rank, world_size):
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ArgumentError(f"Timeline: rank {rank!r} of world_size {world_size!r}: the rank must be an int in "
                                "0..world_size-1")
        self.path = os.path.abspath(os.fspath(path))
        self.rank = rank
        self.world_size = world_size
        self.pid = rank + 1
        self.closed = False
        self._offset_ns = time.time_ns() - time.perf_counter_ns()
        self._lock = threading.Lock()
        self._pending = []
        self._written = 0
        self._rows = {}  # ("thread", ident) or ("lanes", group, index) -> tid
        self._lane_ends = {}  # group -> the end (ns) of the last event on each of its rows
        self._owner = os.getpid()
        self._part = part_path(self.path, rank)
        try:
            self._file = open(self._part, "w", encoding="utf-8")
        except OSError as error:
            raise TimelineError(f"rank {rank}: cannot write the timeline part {self._part} ({error.strerror}); give "
                                "the timeline a path in an existing, writable directory") from None
        self._metadata("process_name", 0, {"name": f"rank {rank}"})
        self._metadata("process_sort_index", 0, {"sort_index": rank})
        self._write_pending()  # the part exists and names its rank even if this rank dies at once
        self._last_flush = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def now_ns(self):
        """Nanoseconds since the epoch on this timeline's clock (see the module docstring)."""
        return time.perf_counter_ns() + self._offset_ns

    def span(self, name, category, args=None):
        """A context manager recording an "X" event on this thread's row from entry to exit."""
        return _Span(self, name, category, args)

    def instant(self, name, category="mark", args=None):
        """A zero-length mark on this thread's row (Chrome's instant event)."""
        with self._lock:
            if self._recording():
                event = {"name": name, "cat": category, "ph": "i", "s": "t", "ts": self.now_ns() // 1000,
                         "pid": self.pid, "tid": self._thread_row()}
                self._add(event, args)

    def complete(self, name, category, start_ns, args=None, row=None):
        """Record an event that began at `start_ns` (from now_ns()) and ends now.

        `row=None` puts it on this thread's row, where it must nest with the thread's
        other spans; a group name (e.g. "comm") puts it on that group's rows, a new row
        whenever it overlaps the last event of every existing one.
        """
        with self._lock:
            if not self._recording():
                return
            end_ns = self.now_ns()  # taken under the lock: events reach a row group in the order they end
            start_us = start_ns // 1000
            tid = self._thread_row() if row is None else self._lane_row(row, start_ns, end_ns)
            event = {"name": name, "cat": category, "ph": "X", "ts": start_us, "dur": end_ns // 1000 - start_us,
                     "pid": self.pid, "tid": tid}
            self._add(event, args)

    def owned_by_this_process(self):
        """False in a forked child (a data-loader worker): the part file is its parent's to write."""
        return os.getpid() == self._owner

    def close(self):
        """Write what is pending and the closing line; stop being current() (idempotent)."""
        if not self.owned_by_this_process():
            return
        with self._lock:
            if self.closed:
                return
            try:
                self._write_pending()
                self._file.write(json.dumps({CLOSED_KEY: "closed", "rank": self.rank, "events": self._written}) + "\n")
                self._file.close()
            except OSError as error:
                self._give_up(error)
            self.closed = True
        if current() is self:
            activate(None)

    # -- rows and writing (called with the lock held) --------------------------------------------
    def _recording(self):
        return not self.closed and self.owned_by_this_process()

    def _add(self, event, args):
        if args:
            event["args"] = args
        self._pending.append(event)
        if len(self._pending) >= FLUSH_EVENTS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            try:
                self._write_pending()
            except OSError as error:  # a full disk must not stop training: the timeline stops instead
                self._give_up(error)

    def _thread_row(self):
        thread = threading.current_thread()
        key = ("thread", thread.ident)
        tid = self._rows.get(key)
        if tid is None:
            tid = self._new_row(key, "main" if thread is threading.main_thread() else thread.name)
        return tid

    def _lane_row(self, group, start_ns, end_ns):
        ends = self._lane_ends.setdefault(group, [])
        for index, last_end in enumerate(ends):
            if last_end <= start_ns:
                break
        else:
            index = len(ends)
            ends.append(0)
            self._new_row(("lanes", group, index), group if index == 0 else f"{group} {index + 1}", LANES_SORT_AFTER)
        ends[index] = end_ns
        return self._rows[("lanes", group, index)]

    def _new_row(self, key, name, sort_after=0):
        tid = len(self._rows) + 1  # Perfetto once merged tid 0 into tid 1 (tracing-chrome#32): start at 1
        self._rows[key] = tid
        self._metadata("thread_name", tid, {"name": name})
        self._metadata("thread_sort_index", tid, {"sort_index": sort_after + tid})
        return tid

    def _metadata(self, name, tid, args):
        self._pending.append({"name": name, "ph": "M", "pid": self.pid, "tid": tid, "args": args})

    def _write_pending(self):
        if self._pending:
            self._file.write("".join(_encode(event) + "\n" for event in self._pending))
            self._file.flush()
            self._written += len(self._pending)
            self._pending.clear()
        self._last_flush = time.monotonic()

    def _give_up(self, error):
        self.closed = True
        self._pending.clear()
        warnings.warn(TimelineWarning(f"rank {self.rank}: cannot write the timeline part {self._part} "
                                      f"({error.strerror or error}); this rank records no more events"), stacklevel=3)
        try:
            self._file.close()
        except OSError:
            pass

    def __repr__(self):
        return f"<Timeline {self.path} rank {self.rank} of {self.world_size}{' closed' if self.closed else ''}>"


class _Span:
    """The context manager of Timeline.span: a plain class, cheaper than a generator per span."""

    __slots__ = ("args", "category", "name", "start_ns", "timeline")

    def __init__(self, timeline, name, category, args):
        self.timeline, self.name, self.category, self.args = timeline, name, category, args

    def __enter__(self):
        self.start_ns = self.timeline.now_ns()
        return self

    def __exit__(self, kind, value, trace):
        args = self.args if kind is None else {**(self.args or {}), "error": kind.__name__}
        self.timeline.complete(self.name, self.category, self.start_ns, args)
        return False
