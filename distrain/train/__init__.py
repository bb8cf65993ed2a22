"""distrain.train: the config-driven data-parallel trainer that `python -m distrain.launch` runs by default.

    python -m distrain.launch -n 2                                   # the default job: a CNN on digits
    python -m distrain.launch -n 2 --config configs/default.toml --set model=resnet18 --set dataset=synthetic
    python -m distrain.launch -n 2 --set run_dir=runs/a --resume     # continue a killed run exactly

From Python, the same run in this process (a world of one unless a launcher started it):

    >>> from distrain.train import load_config, train
    >>> results = train(load_config(assignments=["epochs=3", "run_dir=runs/quick"]))
    >>> results["accuracy"]

The pieces, one idea per module: config (keys, defaults, checks), datasets (digits,
synthetic, shard directories), optimization (optimizer and lr schedule), loop (the
Trainer), checkpoints (what a checkpoint holds, the latest K), metrics (metrics.jsonl and
TensorBoard), progress (the bar or plain lines), report (the summary table and
curves.png), command (the launcher's options and one rank's run).
"""
from .config import KEYS, ConfigError
from .config import load as load_config
from .loop import Trainer
from .nonfinite import NonFiniteError


def train(config, *, resume=False, comm=None):
    """Run the trainer on `config` (from load_config) in this process; returns the summary's numbers.

    `comm`: the communicator to train over; default: distrain.distributed's, initialised
    (and shut down afterwards) here if it is not yet.
    """
    import distrain.distributed as dist

    owned = comm is None and not dist.is_initialized()
    if comm is None:
        comm = dist.init() if owned else dist.get_communicator()
    try:
        return Trainer(config, comm.rank, comm.size, resume=resume).prepare().run(comm)
    finally:
        if owned:
            dist.shutdown()


__all__ = ["KEYS", "ConfigError", "NonFiniteError", "Trainer", "load_config", "train"]
