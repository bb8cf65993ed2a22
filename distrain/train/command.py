"""The trainer's side of `python -m distrain.launch`: its options, the checks before any rank starts, one rank's run.

    python -m distrain.launch [-n N] [--backend ...] [--config FILE.toml] [--set KEY=VALUE ...] [--resume]
                              [--timeline [PATH]] [--debug]

With no script, the launcher runs the trainer. With `-n`, the launcher itself resolves
the configuration and runs `Trainer.prepare()` (data conversion, model construction, the
checks of run_dir) before starting the ranks, so a mistake costs one line and exit code 2;
under mpirun every rank does the same and only rank 0 prints the line. `--debug` shows
the traceback instead.
"""
from __future__ import annotations

import os
import sys

from .config import ConfigError



def add_arguments(parser):
    group = parser.add_argument_group("the built-in trainer (no script given): see configs/default.toml")
    group.add_argument("--config", metavar="FILE.toml", help="the run's configuration (every key and its default: "
                                                             "configs/default.toml)")
    group.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="assignments",
                       help="override one key, e.g. --set lr=0.01 --set model=resnet18 (repeatable)")
    group.add_argument("--resume", action="store_true", help="continue the run in run_dir from its latest checkpoint")
    group.add_argument("--timeline", nargs="?", const="", default=None, metavar="PATH",
                       help="write a Chrome-trace timeline of every rank's steps (default run_dir/timeline.json; "
                            "also $DISTRAIN_TIMELINE)")
    group.add_argument("--debug", action="store_true", help="show tracebacks for configuration errors")


def uses_trainer_options(args) -> bool:
    return bool(args.config or args.assignments or args.resume or args.timeline is not None or args.debug)


def rank_argv(args) -> list:
    """The trainer options again, for the ranks the launcher starts."""
    argv = []
    if args.config:
        argv += ["--config", args.config]
    for assignment in args.assignments:
        argv += ["--set", assignment]
    if args.resume:
        argv.append("--resume")
    if args.timeline is not None:
        argv += ["--timeline", args.timeline] if args.timeline else ["--timeline"]
    if args.debug:
        argv.append("--debug")
    return argv


def resolve(args) -> dict:
    """The configuration: on --resume the run's own config.toml first, then --config, then --set."""
    from . import config

    base = None
    if args.resume:
        run_dir = config.load(args.config, args.assignments)["run_dir"] or config.numbered_run_dir(resume=True)
        saved = os.path.join(run_dir, "config.toml")
        if os.path.isfile(saved):
            base = config.read_file(saved)
    return config.load(args.config, args.assignments, base=base)


def preflight(args, world) -> int:
    """In the launcher, before any rank starts: 0 if the run can start, else 2 after printing the one line.

    The ranks are told the run_dir chosen here (runs/N when none was given).
    """
    from .loop import Trainer

    try:
        trainer = Trainer(resolve(args), 0, world, resume=args.resume, timeline=args.timeline,
                          out=sys.stderr).prepare()
        _check_timeline_directory(args, trainer.config)
    except ConfigError as error:
        if args.debug:
            raise
        print(f"distrain.launch: error: {error}", file=sys.stderr, flush=True)
        return 2
    args.assignments.append(f"run_dir={trainer.run_dir}")
    return 0


def run_rank(args, rank, world) -> int:
    """One rank's whole run: resolve, prepare, join the process group, train, leave.

    Under mpirun every rank does the launcher's checks itself; each exits with code 2 on a
    mistake and only rank 0 prints the line.
    """
    import distrain.distributed as dist

    from ..supervision import say_ending_was_explained
    from .loop import Trainer
    from .nonfinite import NonFiniteError

    try:
        trainer = Trainer(resolve(args), rank, world, resume=args.resume, timeline=args.timeline).prepare()
        _check_timeline_directory(args, trainer.config)
    except ConfigError as error:
        if args.debug:
            raise
        if rank == 0:
            print(f"distrain.launch: error: {error}", file=sys.stderr, flush=True)
        say_ending_was_explained()
        return 2
    comm = dist.init()
    try:
        trainer.run(comm)
    except NonFiniteError as error:
        if rank == 0:
            print(f"distrain.train: {error}", file=sys.stderr, flush=True)
        say_ending_was_explained()
        return 1
    dist.shutdown()
    return 0


def _check_timeline_directory(args, config):
    """--timeline PATH (or timeline = PATH) whose directory cannot be made: a configuration error, not a traceback."""
    path = args.timeline or config["timeline"]
    if path:
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"--timeline {path}: cannot create {directory} ({error.strerror})") from None
