"""A parameter server's checkpoint: what it serves in asynchronous mode, written atomically every N updates.

In asynchronous mode the servers hold the only copy of the parameters and the optimizer's
state (NOTE [ Stale synchronous parallel ] in stale_synchronous.py), so a server that dies
would take the training with it. With a checkpoint file (`--checkpoint PATH`, or the
launcher's `--ps-checkpoint-dir`), a server writes every shard it serves (parameters,
optimizer state, each rank's clock, the version) there every `every` updates, in
distrain's own checkpoint format: written to a temporary file, synced and renamed
(checkpoint/writer.py), with checksums that the reader verifies, and no code in it. A
server started with a checkpoint that exists resumes from it; the ranks, whose
connection to the old server closed, connect to the new one, register again and push
again (served_model.py), each at its own clock in the checkpoint. The server answers none
of them until every rank live at the checkpoint has registered again, so that no round or
bound goes on without the others (with several servers, ranks in different rounds on
different servers would wait for each other forever); one that has not after the
server's heartbeat timeout is left out, and may join later as any rank. The updates since
the last checkpoint are lost, as a rank's steps since its last checkpoint are when a
synchronous job resumes.
"""
from __future__ import annotations

import logging
import os

from .stale_synchronous import ServedShard

log = logging.getLogger("distrain.ps")

DEFAULT_EVERY = 100  # updates between checkpoints
FORMAT = 1


def save(path, shards, world_size):
    """Write every shard's state to `path`, atomically."""
    from ...checkpoint.formats import save as save_checkpoint

    save_checkpoint({"format": FORMAT, "world_size": world_size,
                     "shards": [{"table": key[0], "shard": key[1], **shard.state()}
                                for key, shard in sorted(shards.items())]}, os.fspath(path))


def load(path, world_size, reply, max_bytes=None):
    """{(table, shard): ServedShard} from the checkpoint at `path`, or {} when there is none yet; a checkpoint of
    another job (another world size) or an unreadable one raises, naming the file."""
    if not os.path.exists(path):
        return {}
    from ...checkpoint.formats import load as load_checkpoint
    from ...errors import CheckpointError

    not_ours = f"{path} is not a distrain parameter-server checkpoint (format {FORMAT})"
    try:
        saved = load_checkpoint(os.fspath(path))
    except CheckpointError as error:  # damaged, truncated, not a checkpoint at all: its message names the file
        raise ValueError(f"{error} (this server's only copy of the served parameters: move it away to start them "
                         "again from rank 0's)") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or not isinstance(saved.get("shards"), list):
        raise ValueError(not_ours)
    if saved.get("world_size") != world_size:
        raise ValueError(f"{path} is the checkpoint of a job of {saved.get('world_size')} ranks, this server serves "
                         f"{world_size}: give each job its own checkpoint")
    shards = {}
    try:
        for state in saved["shards"]:
            key = (int(state["table"]), int(state["shard"]))
            arrays = {name: value for name, value in state.items() if name not in ("table", "shard")}
            arrays["values"] = _numpy(arrays["values"])
            shards[key] = ServedShard.restore(key, arrays, world_size, reply,
                                              *(() if max_bytes is None else (max_bytes,)))
    except (KeyError, TypeError, ValueError) as error:  # a ProtocolError (a description it refuses) is a ValueError
        raise ValueError(f"{not_ours}: a served shard in it cannot be restored ({type(error).__name__}: "
                         f"{error})") from None
    log.warning("parameter server: resumed %d served shard(s) from %s (versions %s)", len(shards), path,
                sorted({shard.version for shard in shards.values()}))
    return shards


def _numpy(value):
    """A loaded tensor's array (the checkpoint reader gives distrain tensors)."""
    return getattr(value, "_data", value)
