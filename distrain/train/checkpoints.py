"""The trainer's checkpoints: `run_dir/checkpoints/step-00000120.dt`, the latest K kept.

Each file is one `distrain.save` (temp file, fsync, rename: a kill at any instant leaves
every earlier checkpoint whole and no half-written one under a final name; checksummed,
no pickle). Older files are removed only after the new one is in place. To resume, the
newest file that reads back whole is used; a damaged one is reported and skipped.

What a checkpoint holds (written by loop.Trainer._checkpoint), enough for the resumed run to take
exactly the steps the uninterrupted one would have: the model's and optimizer's and
scheduler's state_dicts, the step, the epoch and how many batches of it were taken, the
data loader's state (its sampler's epoch and seed, the epoch's base seed from which every
worker's seeds derive), every rank's random number generators (distrain's and NumPy's
global ones), the early-stopping record, the elapsed training time, and the
configuration.
"""
from __future__ import annotations

import json
import os
import random
import re
import sys

import numpy

from .. import checkpoint
from ..errors import CheckpointError

FORMAT = "distrain.train/1"
NAME = re.compile(r"^step-(\d{8,})\.dt$")


def directory(run_dir) -> str:
    return os.path.join(run_dir, "checkpoints")


def path_for(run_dir, step) -> str:
    return os.path.join(directory(run_dir), f"step-{step:08d}.dt")


def existing(run_dir) -> list:
    """(step, path) of the checkpoint files in run_dir, newest first."""
    try:
        names = os.listdir(directory(run_dir))
    except FileNotFoundError:
        return []
    found = [(int(match.group(1)), os.path.join(directory(run_dir), name))
             for name in names if (match := NAME.match(name))]
    return sorted(found, reverse=True)


def write(run_dir, step, state, keep):
    """Save `state` as step `step`'s checkpoint, then remove all but the newest `keep`."""
    os.makedirs(directory(run_dir), exist_ok=True)
    checkpoint.save({"format": FORMAT, **state}, path_for(run_dir, step))
    for _, old in existing(run_dir)[keep:]:
        try:
            os.remove(old)
        except FileNotFoundError:
            pass


def read_latest(run_dir, warn=None):
    """The newest checkpoint of run_dir that reads back whole, as a dict; None when there is none.

    A damaged file (a disk error, a hand-edited file) is named in a warning and the next
    older one is tried: resuming a few steps earlier beats not resuming.
    """
    warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
    for step, path in existing(run_dir):
        try:
            state = checkpoint.load(path, map_location="cpu")
        except CheckpointError as error:
            warn(f"distrain.train: skipping the damaged checkpoint {path}: {error}")
            continue
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            warn(f"distrain.train: skipping {path}: not a distrain.train checkpoint")
            continue
        return state
    return None


def rng_state() -> str:
    """This process's global generators (distrain's, NumPy's legacy global one, Python's) as a JSON string.

    A string, because the states hold 128-bit integers that msgpack (how ranks exchange
    plain values) cannot carry, and JSON writes them exactly.
    """
    from ..engine.random import get_rng_state

    kind, keys, position, has_gauss, cached = numpy.random.get_state()
    version, python_keys, gauss = random.getstate()
    return json.dumps({"distrain": get_rng_state(),
                       "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
                       "python": [version, list(python_keys), gauss]})


def set_rng_state(text):
    from ..engine.random import set_rng_state as set_distrain

    state = json.loads(text)
    set_distrain(state["distrain"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    numpy.random.set_state((kind, numpy.asarray(keys, dtype=numpy.uint32), position, has_gauss, cached))
    version, python_keys, gauss = state["python"]
    random.setstate((version, tuple(python_keys), gauss))
