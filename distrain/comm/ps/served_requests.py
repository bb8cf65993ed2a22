"""ParameterServer's requests of asynchronous mode, and the checkpoints of what it serves.

The shards themselves (their bound, rounds and answers) are stale_synchronous.py's; their
checkpoint file's format is server_checkpoint.py's. This is the server's side: which shard a
request goes to, and when the served state is written.
"""
from __future__ import annotations

import logging

from . import server_checkpoint
from .protocol import ProtocolError
from .stale_synchronous import MAX_SHARDS, ServedShard

log = logging.getLogger("distrain.ps")


class ServedRequests:
    """The server's handlers of serve and push, and its checkpoint schedule."""

    def _on_serve(self, header, payload, identity):
        key = (header["table"], header["shard"])
        shard = self.shards.get(key)
        if shard is None:
            if len(self.shards) >= MAX_SHARDS:
                raise ProtocolError(f"rank {header['rank']}: this server holds {MAX_SHARDS} served shards already")
            shard = self.shards[key] = ServedShard(header, self.world_size, self._reply, self.max_message_bytes)
        shard.serve(header, payload, identity)

    def _on_push(self, header, payload, identity):
        shard = self.shards.get((header["table"], header["shard"]))
        if shard is None:
            raise ProtocolError(f"rank {header['rank']}: pushed to shard {header['shard']} of model "
                                f"{header['table']}, which this server does not serve (no rank served it)")
        shard.push(header, payload, identity)

    def _updates(self):
        """(updates applied, shards whose optimizer is described): what a checkpoint is due for."""
        return (sum(shard.version for shard in self.shards.values()),
                sum(shard.optimizer is not None for shard in self.shards.values()))

    def _checkpoint_if_due(self, force=False):
        """Write the served shards every `checkpoint_every` updates, and as soon as a shard's optimizer is described
        (a server that dies before its first `checkpoint_every` updates comes back with its ranks' clocks, its
        optimizer and rank 0's parameters: server_checkpoint.py); a failed write is logged and tried again at the
        next update, never the end of the server."""
        if self.checkpoint is None or not self.shards:
            return
        (updates, described), (written, written_described) = self._updates(), self._checkpointed_at
        if (updates, described) == (written, written_described):
            return
        if described == written_described and updates - written < self.checkpoint_every and not force:
            return
        try:
            server_checkpoint.save(self.checkpoint, self.shards, self.world_size)
            self._checkpointed_at = (updates, described)
        except (OSError, TypeError, ValueError) as error:
            log.error("parameter server: could not write its checkpoint %s: %s", self.checkpoint, error)
