"""ParameterServer's watch over its ranks' connections: a rank whose process died or froze is lost.

NOTE [ Lost ranks ]
ZeroMQ reports a closed connection (a rank's process died, or stopped answering the
heartbeats for `heartbeat_timeout` seconds: a frozen process, a lost network) only as its
file descriptor, so each join records the descriptor its message came on, and a
disconnection marks the rank that joined on it lost. The events are taken before every
message, and ZeroMQ reports a closing before the descriptor can be reused, so a restarted
rank's new connection is never mistaken for the old one. A lost rank may join again (a
restart); in asynchronous mode it is dropped from the staleness bound (stale_synchronous.py),
and the others go on without it. The heartbeats are ZeroMQ's own PING and PONG, answered by
its I/O threads: a rank busy computing answers them, a rank stuck in Python (a deadlock)
does too, and only the staleness bound's timeout names it.
"""
from __future__ import annotations

import logging
import os

import zmq
from zmq.utils.monitor import recv_monitor_message

from .seconds_settings import seconds

log = logging.getLogger("distrain.ps")

HEARTBEAT_INTERVAL_MILLISECONDS = 1000  # ZeroMQ's own PING to every peer (its I/O threads answer, not Python)
DEFAULT_HEARTBEAT_TIMEOUT = 10.0  # seconds without a byte from a peer before its connection is closed
HEARTBEAT_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_HEARTBEAT_TIMEOUT"


class LostRanks:
    """The server's part that takes the monitor's disconnections and drops the ranks they belong to."""

    def _take_events(self):
        """Drop the ranks whose connections closed since the last look (NOTE [ Lost ranks ])."""
        while self.events.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            event = recv_monitor_message(self.events)
            if event["event"] != zmq.EVENT_DISCONNECTED:
                continue
            for rank, info in self.ranks.items():
                if info.get("fd") == event["value"] and not info["left"]:
                    self._lost(rank)

    def _lost(self, rank):
        info = self.ranks[rank]
        info["left"] = info["lost"] = True
        info.pop("fd", None)
        dropped = [shard for shard in self.shards.values() if shard.drop(rank)]
        if not dropped:
            log.info("parameter server: rank %d's connection closed", rank)
            return
        log.warning("parameter server: rank %d's connection closed (its process ended, or stopped answering "
                    "heartbeats for %g s): dropped from the staleness bound of %d served shard(s); the other "
                    "ranks go on", rank, self.heartbeat_timeout, len(dropped))
        # an asynchronous job has no liveness side channel (distributed.init): its collectives that need the lost
        # rank fail here at once, naming it, rather than after the timeout
        self.dropped.add(rank)
        why = self._dropped_message([rank])
        for index, collective in list(self.collectives.items()):
            if rank in collective.group.members and rank not in collective.callers:
                self._fail(index, f"collective #{index[1]} {collective.describe()}: {why}")

    def _dropped_message(self, ranks):
        return (f"rank(s) {ranks} left this asynchronous job (connection closed) and cannot take part in a "
                "collective of every rank; a rank that must meet the others cannot be left out")


def heartbeat_seconds(value=None, environ=os.environ):
    """How long a peer may stay silent (no byte, no answer to ZeroMQ's PING) before the server closes its connection:
    `value`, else $DISTRAIN_PS_HEARTBEAT_TIMEOUT, else 10 s."""
    return seconds(value, HEARTBEAT_ENVIRONMENT_VARIABLE, DEFAULT_HEARTBEAT_TIMEOUT, 1.0, 24 * 3600,
                   "heartbeat_timeout", environ)
