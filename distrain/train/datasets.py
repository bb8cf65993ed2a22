"""The trainer's datasets: a training and a held-out split, both read from shard directories.

Everything the trainer reads goes through the shard pipeline (memory-mapped `.npy` shards,
checked against their index; distrain.data): a user's own shard directory as it is, and
the built-in sets converted once into a cache directory:

- "digits": scikit-learn's 1797 handwritten 8x8 digits, held out 20% per class with a fixed
  seed (so every run, whatever its own seed, is scored on the same 359 images; 1438 train);
- "synthetic": images of a given shape and class count whose class is a fixed random
  pattern plus noise: learnable, and as large as a benchmark needs.

The conversion is made by one process at a time (an advisory file lock), so ranks started
together convert once and the others wait for it; `write_shards` commits the directory
atomically, so a conversion killed halfway is simply done again.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass

import numpy

from ..data import ShardDataset, Subset, write_shards
from ..data.shard_index import read_index
from ..errors import ShardError
from .config import ConfigError

DIGITS_VERSION = 1  # bump when the conversion changes: a new cache entry is made
LOCK_TIMEOUT_SECONDS = 600.0


@dataclass
class Splits:
    """What the trainer trains and evaluates on: datasets yielding (float32 inputs, int64 labels) batches."""

    train: object
    eval: object
    input_shape: tuple
    classes: int
    name: str


def build(config) -> Splits:
    """The training and held-out datasets the configuration names (ConfigError for a bad directory or field)."""
    name = config["dataset"]
    if name == "digits":
        root = _cached(config, f"digits-v{DIGITS_VERSION}", _write_digits)
        return _from_directories(os.path.join(root, "train"), os.path.join(root, "test"), "image", "label", "digits")
    if name == "synthetic":
        shape, classes = tuple(config["synthetic.shape"]), config["synthetic.classes"]
        train, held_out = config["synthetic.samples"], config["synthetic.eval_samples"]
        key = f"synthetic-v1-{'x'.join(map(str, shape))}-c{classes}-n{train}-e{held_out}"
        root = _cached(config, key, lambda path: _write_synthetic(path, shape, classes, train, held_out))
        return _from_directories(os.path.join(root, "train"), os.path.join(root, "test"), "image", "label",
                                 f"synthetic {shape}")
    return _from_user_directory(config)


def cache_root(config) -> str:
    return config["data.cache_dir"] or os.environ.get("DISTRAIN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "distrain")


def _cached(config, key, write) -> str:
    """cache_root/key, written by `write(path)` unless it is there already; one writer at a time."""
    root = cache_root(config)
    path = os.path.join(root, key)
    if os.path.isfile(os.path.join(path, "done")):
        return path
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"data.cache_dir = {root!r}: cannot create it ({error.strerror})") from None
    with _locked(os.path.join(root, key + ".lock")):
        if not os.path.isfile(os.path.join(path, "done")):
            os.makedirs(path, exist_ok=True)
            write(path)
            with open(os.path.join(path, "done"), "w") as marker:
                marker.write("complete\n")
    return path


@contextlib.contextmanager
def _locked(path, timeout=LOCK_TIMEOUT_SECONDS):
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"the data cache {path} stayed locked for {timeout:.0f} s by another process; "
                                      "remove the lock file if no other run is converting data") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_digits(path):
    try:
        from sklearn.datasets import load_digits  # optional: only this conversion needs scikit-learn
    except ImportError:
        raise ConfigError("dataset = \"digits\" needs scikit-learn (it ships the digits): "
                          "pip install 'distrain[train]', or use a shard directory") from None
    digits = load_digits()
    images = (digits.images / 16.0).astype(numpy.float32)[:, None, :, :]  # pixel values 0..16 -> [0, 1]
    labels = digits.target.astype(numpy.int64)
    held_out = numpy.zeros(len(labels), bool)
    rng = numpy.random.default_rng(20261207)  # fixed: the test set does not move with the run's seed
    for label in range(10):
        members = numpy.flatnonzero(labels == label)
        held_out[rng.choice(members, size=round(0.2 * len(members)), replace=False)] = True
    for split, chosen in (("train", ~held_out), ("test", held_out)):
        write_shards(os.path.join(path, split), {"image": images[chosen], "label": labels[chosen]},
                     samples_per_shard=512, overwrite=True)


def _write_synthetic(path, shape, classes, train, held_out):
    rng = numpy.random.default_rng(0)
    patterns = rng.normal(128, 40, (classes,) + shape)
    for split, count, seed in (("train", train, 1), ("test", held_out, 2)):
        split_rng = numpy.random.default_rng(seed)
        labels = numpy.arange(count) % classes
        split_rng.shuffle(labels)

        def chunks(labels=labels, split_rng=split_rng):
            for start in range(0, count, 1024):
                part = labels[start:start + 1024]
                noise = split_rng.normal(0, 60, (len(part),) + shape)
                images = numpy.clip(patterns[part] + noise, 0, 255).astype(numpy.uint8)
                for image, label in zip(images, part):
                    yield {"image": image, "label": numpy.int64(label)}

        write_shards(os.path.join(path, split), chunks(), samples_per_shard=1024, overwrite=True)


def _from_user_directory(config) -> Splits:
    path = config["dataset"]
    inputs, labels = config["data.input_field"], config["data.label_field"]
    eval_dir = config["data.eval_dir"]
    if not eval_dir and os.path.isfile(os.path.join(path, "test", "index.json")):
        eval_dir = os.path.join(path, "test")
    train_dir = os.path.join(path, "train") if eval_dir and os.path.isfile(
        os.path.join(path, "train", "index.json")) else path
    if eval_dir:
        return _from_directories(train_dir, eval_dir, inputs, labels, path)
    whole = _open(train_dir, inputs, labels)
    order = numpy.random.default_rng(0).permutation(len(whole))
    held = int(round(config["data.eval_fraction"] * len(whole)))
    if held == 0:
        raise ConfigError(f"dataset = {path!r}: data.eval_fraction = {config['data.eval_fraction']} of "
                          f"{len(whole)} samples holds out none; give data.eval_dir or a larger fraction")
    splits = Splits(Subset(whole, numpy.sort(order[held:])), Subset(whole, numpy.sort(order[:held])),
                    *_shape_and_classes(whole, train_dir, inputs, labels), path)
    return splits


def _from_directories(train_dir, eval_dir, inputs, labels, name) -> Splits:
    train = _open(train_dir, inputs, labels)
    held_out = _open(eval_dir, inputs, labels)
    shape, classes = _shape_and_classes(train, train_dir, inputs, labels)
    eval_shape, eval_classes = _shape_and_classes(held_out, eval_dir, inputs, labels)
    if eval_shape != shape:
        raise ConfigError(f"data.eval_dir {eval_dir!r}: field {inputs!r} has shape {eval_shape}, but the training "
                          f"data's is {shape}")
    return Splits(train, held_out, shape, max(classes, eval_classes), name)


def _open(path, inputs, labels):
    """A ShardDataset of `path` giving (inputs as float32, labels as int64) batches."""
    try:
        index = read_index(path)
    except ShardError as error:
        raise ConfigError(f"dataset {path!r}: not a shard directory ({error})") from None
    fields = {field["name"]: field for field in index["fields"]}
    for key, field in (("data.input_field", inputs), ("data.label_field", labels)):
        if field not in fields:
            raise ConfigError(f"{key} = {field!r}: {path} has no such field; its fields are "
                              f"{', '.join(sorted(fields))}")
    if numpy.dtype(fields[labels]["dtype"]).kind not in "iu" or fields[labels]["shape"]:
        raise ConfigError(f"data.label_field = {labels!r}: {path}'s labels must be integers of shape (), "
                          f"got {fields[labels]['dtype']} {tuple(fields[labels]['shape'])}")
    dtype = numpy.dtype(fields[inputs]["dtype"])
    if dtype != numpy.uint8 and dtype.kind != "f":
        raise ConfigError(f"data.input_field = {inputs!r}: {path}'s inputs must be uint8 (scaled to [0, 1]) or "
                          f"floating point (used as they are), got {dtype}")
    scale = 1 / 255 if dtype == numpy.uint8 else 1.0
    try:
        return ShardDataset(path, batch_transform=InputsAndLabels(inputs, labels, scale))
    except ShardError as error:
        raise ConfigError(f"dataset {path!r}: {error}") from None


class InputsAndLabels:
    """A batch {field: array} -> (inputs float32 scaled, labels int64): one vectorised pass per batch (picklable)."""

    draws_random_numbers = False  # so the loader skips reseeding per batch (NOTE [ Deterministic datasets ])

    def __init__(self, inputs, labels, scale):
        self.inputs, self.labels, self.scale = inputs, labels, scale

    def __call__(self, batch):
        images = batch[self.inputs].astype(numpy.float32)
        if self.scale != 1.0:
            images *= numpy.float32(self.scale)
        return images, batch[self.labels].astype(numpy.int64)


def _shape_and_classes(dataset, path, inputs, labels):
    """The inputs' shape and the class count (the highest label + 1): reads every label, so a damaged shard shows."""
    try:
        return _scan(dataset, path, inputs, labels)
    except ShardError as error:
        raise ConfigError(f"dataset {path!r}: {error}") from None


def _scan(dataset, path, inputs, labels):
    index = read_index(path)
    shape = next(tuple(field["shape"]) for field in index["fields"] if field["name"] == inputs)
    base = getattr(dataset, "dataset", dataset)
    highest = 0
    for start in range(0, len(base), 65536):
        _, batch_labels = base.get_batch(numpy.arange(start, min(start + 65536, len(base))))
        if batch_labels.size:
            if batch_labels.min() < 0:
                raise ConfigError(f"dataset {path!r}: field {labels!r} holds negative labels; classes must be "
                                  "0, 1, ...")
            highest = max(highest, int(batch_labels.max()))
    return shape, highest + 1
