"""What a resumed run must keep from its checkpoint, and where the data order of each epoch comes from.

NOTE [ Exact resume ] (loop.py) says why this is enough for bit-identical losses.
"""
from __future__ import annotations

import json
import os
import tomllib

import numpy

from . import checkpoints
from .asynchronous import resume_warning
from .config import ConfigError, flatten
from .optimization import build_scheduler

# What a resumed run may change: how long it runs, how it reports, where it runs. The rest is the
# trajectory itself, restored from the checkpoint (the optimizer's lr, the sampler's seed, ...):
# a new value there would be silently ignored, or worse, half applied.
CHANGEABLE_ON_RESUME = {"steps", "epochs", "workers", "device", "bucket_cap_mb", "gradient_compression", "eval_every",
                        "checkpoint_every", "keep_checkpoints", "log_every", "print_every", "tensorboard",
                        "tensorboard_every", "plot",
                        "timeline", "nonfinite", "clip_grad_norm", "early_stop.patience", "early_stop.metric",
                        "early_stop.min_delta", "data.cache_dir", "run_dir"}
PATH_KEYS = {"dataset", "data.eval_dir"}  # the same directory however it is spelled


def loader_seed(seed, epoch) -> int:
    """The loader's seed for `epoch`: a function of the run's seed and the epoch only (NOTE [ Exact resume ])."""
    return int(numpy.random.SeedSequence([seed, epoch, 0x10AD]).generate_state(1, numpy.uint64)[0] >> 1)


def check_unchanged(saved_toml, config):
    """ConfigError naming every key a resumed run would change that its checkpoint fixes."""
    saved = flatten(tomllib.loads(saved_toml))
    changed = [f"{name} {saved[name]!r} -> {config[name]!r}" for name in sorted(config)
               if name in saved and name not in CHANGEABLE_ON_RESUME and not _same(name, saved[name], config[name])]
    if changed:
        raise ConfigError(f"--resume: {'; '.join(changed)}: a resumed run keeps what its checkpoint was trained "
                          f"with (only {', '.join(sorted(CHANGEABLE_ON_RESUME))} may change); start a new run_dir "
                          "to change it")


def _same(name, saved, given) -> bool:
    if name in PATH_KEYS and saved and given and saved not in ("digits", "synthetic"):
        return os.path.realpath(saved) == os.path.realpath(given)
    return saved == given


def batches_left_in_pass(samples, batches_taken, batch_size, old_world, new_world) -> int:
    """Per rank of `new_world`, the batches left in an epoch that `old_world` ranks left after `batches_taken` each.

    The old ranks consumed the first batches_taken * batch_size * old_world positions of the
    epoch's order; the rest is split over the new ranks, the tail dropped (drop_last).
    """
    remaining = max(samples - batches_taken * batch_size * old_world, 0)
    return remaining // new_world // batch_size


def restore(trainer, state):
    """The trainer's step, position, optimizer, scheduler, loader and generators from the checkpoint `state`
    (NOTE [ Exact resume ] in loop.py), and asynchronous training's staleness counts. Returns the warning a
    resume owes when asynchronous training lost the optimizer's state on the way (asynchronous.py), or None."""
    config = trainer.config
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.asynchronous is not None:
        warning = trainer.asynchronous.resumed(trainer.optimizer, state, trainer.world)
    else:
        warning = resume_warning(trainer.optimizer, state["step"], "asynchronous" in state, False)
    trainer.step, trainer.epoch, trainer.taken = state["step"], state["epoch"], state["batches_taken"]
    trainer.elapsed_before = state["elapsed"]
    trainer.early_stopping.load_state_dict(state["early_stop"])
    trainer.best_accuracy = state["best_accuracy"]
    old_world = state["world_size"]
    trainer.resumed_pass = trainer.taken > 0
    if trainer.taken:
        loader_state = json.loads(state["loader"][trainer.rank if old_world == trainer.world else 0])
        trainer.loader.load_state_dict(loader_state)  # the loader's generator too, as the pass began
    if old_world != trainer.world:  # the epoch goes on from the same global position, in batches of the new world
        if trainer.taken:
            left = batches_left_in_pass(len(trainer.splits.train), trainer.taken, config["batch_size"], old_world,
                                        trainer.world)
            trainer.pass_batches = left // config["accumulate"] * config["accumulate"]
            trainer.taken = 0
        if not config["steps"]:  # an epochs run still ends after its epochs, counted in the new world's steps
            rest = (trainer.pass_batches // config["accumulate"] if trainer.resumed_pass else trainer.steps_per_epoch)
            later = config["epochs"] - trainer.epoch - (1 if trainer.resumed_pass else 0)
            trainer.total_steps = trainer.step + rest + max(later, 0) * trainer.steps_per_epoch
            trainer.scheduler = build_scheduler(config, trainer.optimizer, trainer.total_steps)
    trainer.scheduler.load_state_dict(state["scheduler"])
    rngs = state["rng"]
    checkpoints.set_rng_state(rngs[trainer.rank % len(rngs)])
    if old_world != trainer.world:
        where = (f": epoch {trainer.epoch} goes on from the same sample in its order, split over {trainer.world}"
                 if trainer.resumed_pass else "")
        trainer.say(f"resuming step {trainer.step} (epoch {trainer.epoch}) of a run on {old_world} rank(s) with "
                    f"{trainer.world}{where}")
    else:
        trainer.say(f"resuming from step {trainer.step} (epoch {trainer.epoch}, batch {trainer.taken} of it)")
    return warning
