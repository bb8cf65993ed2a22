"""merge: the ranks' part files into one Chrome-trace JSON file, written atomically.

Rank 0 calls it once every rank has closed its timeline (NOTE [ Timeline part files ]).
It waits, up to `timeout`, for each part's closing line rather than trusting that the
others are done, then streams the parts' lines into the trace one at a time (memory does
not grow with the run's length). It never hangs and never fails because of another rank:
a part that is missing or unfinished when the time is up is merged as far as it goes,
and a TimelineWarning names the rank.
"""
from __future__ import annotations

import json
import os
import time
import warnings

from ..durable import replace_file
from .recorder import CLOSED_KEY, TimelineWarning, part_path

POLL_SECONDS = 0.02
TAIL_BYTES = 512  # the closing line is well under this


def merge(path, world_size, timeout=30.0):
    """Write the trace of ranks 0..world_size-1 at `path` from their parts, and remove the parts.

    Returns the ranks whose part was missing or unfinished (an empty list when all were
    whole). The file is {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": ...};
    open it in https://ui.perfetto.dev or chrome://tracing.
    """
    path = os.path.abspath(os.fspath(path))
    parts = [part_path(path, rank) for rank in range(world_size)]
    deadline = time.monotonic() + timeout
    waiting = set(range(world_size))
    while True:
        waiting = {rank for rank in waiting if not _is_closed(parts[rank])}
        remaining = deadline - time.monotonic()
        if not waiting or remaining <= 0:
            break
        time.sleep(min(POLL_SECONDS, remaining))
    problems = {}

    def write(file):
        file.write(b'{"traceEvents":[\n')
        separator = b""
        for rank, part in enumerate(parts):
            for line in _event_lines(part, rank, problems, timeout):
                file.write(separator + line)
                separator = b",\n"
        other = {"world_size": world_size, "incomplete_ranks": sorted(problems)}
        file.write(b'\n],"displayTimeUnit":"ms","otherData":' + json.dumps(other).encode() + b"}\n")

    replace_file(path, write)
    for part in parts:
        try:
            os.unlink(part)
        except FileNotFoundError:
            pass
    if problems:
        warnings.warn(TimelineWarning(f"timeline {path}: " + "; ".join(problems[rank] for rank in sorted(problems))),
                      stacklevel=2)
    return sorted(problems)


def _is_closed(part):
    """Whether the part's last line is its closing line."""
    try:
        with open(part, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - TAIL_BYTES))
            tail = file.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    except OSError:
        return False
    try:
        return CLOSED_KEY in json.loads(tail)
    except (ValueError, TypeError):
        return False


def _event_lines(part, rank, problems, timeout):
    """The whole event lines of one part (bytes, without their newline); notes in `problems` what is wrong."""
    try:
        file = open(part, "rb")
    except FileNotFoundError:
        problems[rank] = (f"rank {rank}'s part {part} is missing after {timeout:g} s (the rank never started its "
                          "timeline, crashed first, or writes to another file system)")
        return
    events, damaged, closed = 0, 0, False
    with file:
        for line in file:
            line = line.rstrip(b"\n")
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                damaged += 1  # the torn last line of a rank killed mid-write
                continue
            if not isinstance(event, dict):
                damaged += 1
            elif CLOSED_KEY in event:
                closed = True
            elif "ph" in event:
                events += 1
                yield line
            else:
                damaged += 1
    if not closed:
        problems[rank] = (f"rank {rank}'s part has no closing line after {timeout:g} s (the rank crashed, or has "
                          f"not closed its timeline yet): merged its {events} whole events")
    elif damaged:
        problems[rank] = f"rank {rank}'s part held {damaged} unreadable lines, left out"
