"""The trainer's configuration: every key, its type, its default, and how a user sets it.

A run is described by one flat table of keys (dotted names for the few sections:
`synthetic.shape`, `data.eval_dir`, `model_args.width`, ...). Values come, later ones
winning, from the defaults below, a TOML file (`--config FILE.toml`, read with the
standard library's tomllib) and `--set KEY=VALUE` pairs (VALUE written as in TOML; a
bare word is a string). Every key is checked before anything runs: an unknown key, a
value of the wrong type or outside its accepted values is a `ConfigError` naming the
key, the value and what is accepted, which the launcher prints as one line (exit code 2).

`configs/default.toml` lists every key with its default and a comment; a test keeps it
equal to `KEYS`.
"""
from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field

from ..errors import DistrainError


class ConfigError(DistrainError, ValueError):
    """A key, value, path or combination the trainer cannot run with (a user's mistake, not a bug)."""


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default, what it means, and the values it accepts."""

    kind: type  # int, float, str, bool, list (of numbers) or dict (a table passed on as keyword arguments)
    default: object
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    items: type | None = None  # for lists: the type of each item
    length: tuple = field(default=())  # for lists: the accepted lengths


OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")  # optimization.OPTIMIZERS builds each (a test checks)
SCHEDULES = ("constant", "cosine", "linear", "step")
ON_NONFINITE = ("stop", "skip")

KEYS = {
    # what is trained on what
    "model": Key(str, "cnn", "a name from distrain.models (mlp, cnn, resnet18, resnet34, or one you registered)"),
    "model_args": Key(dict, {}, "keyword arguments for the model (e.g. width = 64, stem = \"cifar\"); the input "
                                "shape and class count come from the dataset"),
    "dataset": Key(str, "digits", "\"digits\" (scikit-learn's 8x8 digits), \"synthetic\" (see synthetic.*), or the "
                                  "path of a shard directory (distrain.data.write_shards)"),
    "data.cache_dir": Key(str, "", "where digits and synthetic data are converted to shards once "
                                   "(default: $DISTRAIN_CACHE, else ~/.cache/distrain)"),
    "data.input_field": Key(str, "image", "a shard directory's input field"),
    "data.label_field": Key(str, "label", "a shard directory's integer label field"),
    "data.eval_dir": Key(str, "", "a shard directory's held-out split (default: its test/ subdirectory if there is "
                                  "one, else data.eval_fraction of it)"),
    "data.eval_fraction": Key(float, 0.2, "the share held out for evaluation when there is no separate split",
                              minimum=0.0),
    "synthetic.shape": Key(list, [3, 32, 32], "synthetic images' shape (channels, height, width)", items=int,
                           length=(3,)),
    "synthetic.classes": Key(int, 10, "synthetic images' class count", minimum=2),
    "synthetic.samples": Key(int, 8192, "synthetic training images", minimum=1),
    "synthetic.eval_samples": Key(int, 1024, "synthetic held-out images", minimum=1),
    # how long and in what batches
    "batch_size": Key(int, 32, "samples per rank per forward (the global batch is batch_size * ranks * accumulate)",
                      minimum=1),
    "epochs": Key(int, 30, "passes over the training data (ignored when steps > 0)", minimum=1),
    "steps": Key(int, 0, "total optimizer steps; wins over epochs when > 0", minimum=0),
    "accumulate": Key(int, 1, "forwards and backwards per optimizer step (gradient accumulation)", minimum=1),
    "workers": Key(int, 0, "data loader worker processes per rank (0: load in the training process)", minimum=0),
    "device": Key(str, "auto", "where each rank trains: cuda (its local rank's GPU), cpu, or auto (cuda when a GPU "
                               "and CuPy are there)", choices=("auto", "cpu", "cuda")),
    "seed": Key(int, 0, "seeds the model's initialisation, the data order and every random number", minimum=0),
    # the update
    "optimizer": Key(str, "adam", "the optimizer", choices=OPTIMIZERS),
    "lr": Key(float, 0.003, "the peak learning rate", minimum=0.0),
    "lr_scaling": Key(str, "sqrt", "lr is for one rank's batch; with N ranks and accumulate A the batch is N*A times "
                                   "larger and the optimizer gets lr * sqrt(N*A) (sqrt: suits Adam), lr * N*A (linear: "
                                   "Goyal et al.'s rule for SGD, with warm-up) or lr (none)",
                      choices=("sqrt", "linear", "none")),
    "momentum": Key(float, 0.9, "sgd's momentum (and rmsprop's)", minimum=0.0),
    "weight_decay": Key(float, 0.0, "weight decay (decoupled for adamw)", minimum=0.0),
    "schedule": Key(str, "cosine", "the learning rate after warm-up: constant, cosine or linear (towards 0 at the "
                                   "end) or step (times 0.1 at 50% and 75% of the steps)", choices=SCHEDULES),
    "warmup_steps": Key(int, 0, "steps of linear warm-up from 0 to lr", minimum=0),
    "clip_grad_norm": Key(float, 0.0, "clip the gradients' global L2 norm to this (0: off)", minimum=0.0),
    "nonfinite": Key(str, "stop", "a non-finite loss or gradient: stop the run, or skip that step", choices=ON_NONFINITE),
    # communication
    "bucket_cap_mb": Key(float, 25.0, "gradient bucket size for the allreduce during backward", minimum=0.0),
    "gradient_compression": Key(str, "none", "\"fp16\" halves the bytes on the wire", choices=("none", "fp16")),
    # evaluation and early stopping
    "eval_every": Key(int, 0, "evaluate every this many steps (0: at the end of every epoch); always at the end",
                      minimum=0),
    "early_stop.patience": Key(int, 0, "stop after this many evaluations without improvement (0: off)", minimum=0),
    "early_stop.metric": Key(str, "accuracy", "the monitored evaluation metric", choices=("accuracy", "loss")),
    "early_stop.min_delta": Key(float, 0.0, "the smallest change that counts as an improvement", minimum=0.0),
    # what is written
    "run_dir": Key(str, "", "where metrics.jsonl, checkpoints/, config.toml, curves.png and the TensorBoard events "
                            "go (default: a new numbered directory runs/1, runs/2, ...; with --resume, the newest)"),
    "checkpoint_every": Key(int, 0, "write a checkpoint every this many steps (0: at the end of every epoch); "
                                    "always at the end", minimum=0),
    "keep_checkpoints": Key(int, 3, "how many of the latest checkpoints to keep", minimum=1),
    "log_every": Key(int, 1, "a metrics.jsonl line every this many steps", minimum=1),
    "print_every": Key(int, 50, "without a terminal, a progress line every this many steps", minimum=1),
    "tensorboard": Key(bool, True, "write TensorBoard events (needs tensorboardX)"),
    "tensorboard_every": Key(int, 50, "training scalars go to TensorBoard every this many steps, as Lightning's "
                                      "log_every_n_steps (each costs tensorboardX ~90 us; metrics.jsonl has every "
                                      "step)", minimum=1),
    "plot": Key(bool, True, "draw curves.png at the end (needs matplotlib)"),
    "timeline": Key(str, "", "write a Chrome-trace timeline of every rank's steps to this path (or --timeline)"),
}


def defaults() -> dict:
    return {name: _copy(key.default) for name, key in KEYS.items()}


def _copy(value):
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


def load(config_file=None, assignments=(), base=None) -> dict:
    """The resolved configuration: `base` (default: the defaults), then the file, then `KEY=VALUE` assignments."""
    config = defaults() if base is None else {**defaults(), **base}
    if config_file:
        config.update(read_file(config_file))
    for assignment in assignments:
        name, value = parse_assignment(assignment)
        if name.startswith("model_args."):
            config["model_args"] = {**config["model_args"], name.split(".", 1)[1]: value}
        else:
            config[name] = check(name, value)
    validate(config)
    return config


def read_file(path) -> dict:
    """The keys a TOML file sets, flattened to dotted names and checked."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file")
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config {path}: not valid TOML: {error}") from None
    return {name: check(name, value, where=f"{path}: ") for name, value in flatten(table).items()}


def flatten(table, prefix="") -> dict:
    """{"synthetic": {"shape": [..]}} -> {"synthetic.shape": [..]}; model_args stays one table."""
    flat = {}
    for name, value in table.items():
        dotted = prefix + name
        if isinstance(value, dict) and dotted != "model_args":
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def parse_assignment(text):
    """"KEY=VALUE" -> (key, value): VALUE as TOML (3, 0.1, true, [3, 32, 32], "x"), else the bare string."""
    name, equals, raw = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set lr=0.01")
    if name not in KEYS and not name.startswith("model_args."):
        raise ConfigError(_unknown(name, f"--set {text!r}: "))
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: run_dir=runs/a, model=resnet18
    if name in KEYS and KEYS[name].kind is str and not isinstance(value, str):
        value = raw  # dataset=123 is the directory "123"
    return name, value


def check(name, value, where=""):
    """`value` for key `name`, or a ConfigError naming both and what is accepted."""
    if name not in KEYS:
        raise ConfigError(_unknown(name, where))
    key = KEYS[name]
    accepted = _describe(key)
    if key.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, key.kind) or (key.kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}{name} = {_show(value)}: expected {accepted}")
    if key.kind is float and not math.isfinite(value):
        raise ConfigError(f"{where}{name} = {_show(value)}: expected a finite number")
    if key.choices and value not in key.choices:
        raise ConfigError(f"{where}{name} = {_show(value)}: expected {accepted}")
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{where}{name} = {_show(value)}: expected {accepted}")
    if key.kind is list:
        if key.length and len(value) not in key.length or not all(
                isinstance(item, key.items) and not isinstance(item, bool) and item > 0 for item in value):
            raise ConfigError(f"{where}{name} = {_show(value)}: expected {accepted}")
    return _copy(value)


def validate(config):
    """Checks across keys."""
    if config["dataset"] not in ("digits", "synthetic") and not os.path.isdir(config["dataset"]):
        raise ConfigError(f"dataset = {config['dataset']!r}: no such directory; expected \"digits\", \"synthetic\" "
                          "or the path of a shard directory (distrain.data.write_shards)")
    if config["data.eval_dir"] and not os.path.isdir(config["data.eval_dir"]):
        raise ConfigError(f"data.eval_dir = {config['data.eval_dir']!r}: no such directory")
    if not 0 <= config["data.eval_fraction"] < 1:
        raise ConfigError(f"data.eval_fraction = {config['data.eval_fraction']}: expected a number in [0, 1)")


def _describe(key) -> str:
    if key.choices:
        return "one of " + ", ".join(f'"{choice}"' for choice in key.choices)
    if key.kind is list:
        return f"a list of {key.length[0] if key.length else 'some'} positive {key.items.__name__}s"
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table"}[key.kind]
    if key.minimum is not None:
        words += f" >= {key.minimum:g}"
    return words


def _show(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else repr(value)


def _unknown(name, where) -> str:
    close = difflib.get_close_matches(name, KEYS, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{where}unknown key {name!r}: {hint}the keys are listed in configs/default.toml"


def to_toml(config) -> str:
    """The resolved configuration as TOML (top-level keys, then one table per section), readable by load()."""
    top = {name: value for name, value in config.items() if "." not in name and not isinstance(value, dict)}
    sections = {}
    for name, value in config.items():
        if isinstance(value, dict):
            sections.setdefault(name, {}).update(value)
        elif "." in name:
            section, key = name.split(".", 1)
            sections.setdefault(section, {})[key] = value
    lines = [f"{name} = {_toml_value(value)}" for name, value in top.items()]
    for section, table in sections.items():
        lines += ["", f"[{section}]"] + [f"{name} = {_toml_value(value)}" for name, value in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return str(value)


RUNS = "runs"


def numbered_run_dir(resume) -> str:
    """runs/N for a run given no run_dir: the next free number, or with --resume the newest run."""
    try:
        numbers = [int(name) for name in os.listdir(RUNS) if name.isdigit()]
    except FileNotFoundError:
        numbers = []
    if resume:
        if not numbers:
            raise ConfigError(f"--resume: there is no run to resume in {RUNS}/ (runs without a run_dir are "
                              f"numbered {RUNS}/1, {RUNS}/2, ...); give the run's run_dir with --set run_dir=PATH")
        return os.path.join(RUNS, str(max(numbers)))
    return os.path.join(RUNS, str(max(numbers, default=0) + 1))
