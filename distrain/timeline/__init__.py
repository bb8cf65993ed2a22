"""distrain.timeline: one Chrome-trace/Perfetto file showing every rank's whole training step.

Horovod's timeline shows the collectives; this one shows the step around them too: a row
per thread of each rank for what the loop marks with spans (data wait, forward,
backward, optimizer step, checkpoint writes, eval), and "comm" rows with each gradient
bucket's allreduce (push/pull on the parameter server), from the moment the bucket filled
during backward to the moment the rank saw it finished, with the bucket's index, bytes
and backend. Open the file in https://ui.perfetto.dev or chrome://tracing.

How it is made: each rank records into its own `Timeline`, which streams the events to a
part file beside the trace (recorder.py); rank 0 merges the parts into the one file
(merge.py). The process-wide `current()` timeline, set by `activate`, is what
DistributedDataParallel's reducer (parallel.py) records into; when it is None (the
default) the reducer only checks that, once per bucket (and an empty dict per gradient).

`DISTRAIN_TIMELINE=trace.json` records one for any script that calls
`distrain.distributed.init()`, under the launcher or not (as HOROVOD_TIMELINE does):
init() starts it (`from_environment`); `distrain.distributed.shutdown()`, or the end of
the process, closes it, and rank 0 then merges every rank's part.

Example::

    from distrain import timeline

    timeline.activate(timeline.Timeline("trace.json", rank, world_size))
    with timeline.span("forward", "forward"):
        loss = loss_fn(model(x), y)
"""
from __future__ import annotations

import atexit
import contextlib
import os

from .merge import merge
from .recorder import (
    Timeline,
    TimelineError,
    TimelineWarning,
    activate,
    current,
    part_path,
)

ENVIRONMENT_VARIABLE = "DISTRAIN_TIMELINE"
_NOTHING = contextlib.nullcontext()
_started_from_environment = None  # (timeline, merge timeout) that from_environment started and has not finished
_exit_hook_registered = False


def span(name, category, args=None):
    """`current().span(...)`, or a context manager that does nothing when no timeline is active."""
    timeline = current()
    return _NOTHING if timeline is None else timeline.span(name, category, args)


def instant(name, category="mark", args=None):
    """`current().instant(...)`, or nothing when no timeline is active."""
    timeline = current()
    if timeline is not None:
        timeline.instant(name, category, args)


def from_environment(rank, world_size, merge_timeout=60.0, environ=None):
    """Start and activate a timeline at $DISTRAIN_TIMELINE, if set; returns it (or None when unset).

    If a timeline is active already, it is returned and none is started. The one started
    here is finished by `finish_from_environment`: distrain.distributed.shutdown() calls
    it, and so does the end of the process (an atexit hook) if nobody did. Whoever closes
    a timeline merges it, so a program that closes this one itself also merges it.
    """
    global _started_from_environment, _exit_hook_registered
    path = (os.environ if environ is None else environ).get(ENVIRONMENT_VARIABLE)
    if not path:
        return None
    if current() is not None:
        return current()
    try:
        timeline = Timeline(path, rank, world_size)
    except TimelineError as error:
        raise TimelineError(f"${ENVIRONMENT_VARIABLE}={path}: {error}") from None
    activate(timeline)
    _started_from_environment = (timeline, merge_timeout)
    if not _exit_hook_registered:
        atexit.register(finish_from_environment)
        _exit_hook_registered = True
    return timeline


def finish_from_environment():
    """Close the timeline from_environment started; on rank 0, merge every rank's part (idempotent).

    No barrier on the communicator: merge waits for each part's closing line (with the
    timeout from_environment was given). A barrier would race the launcher, which tells
    the other ranks a rank has ended (the liveness goodbye) before its atexit hooks run,
    so ranks in a barrier at exit could fail on a peer that is only finishing.
    """
    global _started_from_environment
    if _started_from_environment is None:
        return
    timeline, timeout = _started_from_environment
    _started_from_environment = None
    if timeline.closed or not timeline.owned_by_this_process():
        return  # closed by the program (it merges), or a forked child's copy
    timeline.close()
    if timeline.rank == 0:
        merge(timeline.path, timeline.world_size, timeout)


__all__ = ["ENVIRONMENT_VARIABLE", "Timeline", "TimelineError", "TimelineWarning", "activate", "current",
           "finish_from_environment", "from_environment", "instant", "merge", "part_path", "span"]
