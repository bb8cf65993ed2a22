"""Several parameter servers: a large allreduce split into partitions, each summed on its own server.

NOTE [ Partitions on several servers ]
A job may run S servers (the launcher's `--servers S`; a rank learns their addresses from
$DISTRAIN_PS_ADDRESSES, server 0 first). A rank holds one connection to each, authenticated
exactly as the one server of a single-server job (zap.py, protocol.py). Then:

- An allreduce of the whole job larger than the partition size (default 4 MiB,
  $DISTRAIN_PS_PARTITION_MB, `distrain.distributed.init(partition_mb=...)`, the launcher's
  `--partition-mb`) is split into P contiguous slices of whole elements: P is the smallest
  multiple of S whose slices hold at most a partition each, and the slices differ in size
  by at most one element. Slice k goes to server k mod S, which is what assigning the
  slices, largest first, to the least-loaded server gives for slices this equal: each
  server carries 1/S of the bytes of every allreduce, so push and pull bandwidth grow
  with S. The plan depends only on the array's size, the dtype, the partition size and S,
  so every rank computes the same one without a word exchanged. One server splits too:
  it then sums slice k while slice k+1 arrives, a rank copies answer k in while k+1 is
  on its way, and the server's sums come from reused memory rather than a fresh mapping
  of the whole array (benchmarks/bench_ps.py).
- Every slice is a collective of its own on its server, numbered by that server's count
  of collectives from this rank (server 0's count is the one every other request uses),
  and all slices are sent at once: the connections' ZeroMQ I/O threads move them
  concurrently, and each answer is copied into its slice of the array in place.
- Each server adds the slices in rank order (server.py), element by element, so the
  result is bit for bit what one server gives, for any S and any partition size.
- Everything else goes to server 0 alone, exactly as in a single-server job: broadcast,
  allgather, barrier, the store, point-to-point messages, subgroups (and their
  collectives), and allreduces no larger than a partition. Their order and matching are
  unchanged.
- The ranks must agree on the layout (the server list and the partition size): each
  rank's join names it, and a server refuses a join whose layout differs from the first
  rank's, naming both (server.ParameterServer._check_layout).
- A server that dies closes its connections; a rank waiting on it (or on a partition of
  the same allreduce on another server) learns so from its connection's monitor within a
  moment and fails naming that server's address (client.ServerConnection), and the
  launcher, which watches the server processes it started, ends the job naming it even
  while no rank uses it (ps_servers.py). A server that hangs is named by the collective
  timeout.
"""
from __future__ import annotations

import math
import os

from ..base import CommunicatorError, Handle
from . import protocol

DEFAULT_PARTITION_BYTES = 4 * 2 ** 20


def server_addresses(address=None, environ=os.environ):
    """The job's server addresses, server 0 first: `address` (one, a comma-separated list, or a sequence), else
    $DISTRAIN_PS_ADDRESSES, else $DISTRAIN_PS_ADDRESS; ValueError naming the fix when none or a bad list."""
    many, one = protocol.ADDRESSES_ENVIRONMENT_VARIABLE, protocol.ADDRESS_ENVIRONMENT_VARIABLE
    source = "address="
    if not address:
        address, source = environ.get(many), f"${many}"
        if address and environ.get(one) and environ[one] != address.split(",")[0].strip():
            raise ValueError(f"${one} is {environ[one]!r} but the first of ${many} is {address.split(',')[0]!r}: "
                             f"{one} names server 0, the first of the list; set one of them, or both alike")
    if not address:
        address, source = environ.get(one), f"${one}"
    if not address:
        raise ValueError(f"the parameter-server backend needs the server's address: set {one} (or {many} for "
                         "several servers) or pass address= (the launcher does it for you: "
                         "python -m distrain.launch -n N --backend ps script.py)")
    addresses = [part.strip() for part in address.split(",")] if isinstance(address, str) else list(address)
    if not all(isinstance(part, str) and part for part in addresses):
        raise ValueError(f"{source}: the parameter servers' addresses must be non-empty strings "
                         f"(tcp://HOST:PORT, comma-separated), got {address!r}")
    repeated = sorted({part for part in addresses if addresses.count(part) > 1})
    if repeated:
        raise ValueError(f"{source} names the parameter server(s) {repeated} more than once: list each server once")
    if len(addresses) > protocol.MAX_SERVERS:
        raise ValueError(f"{source} names {len(addresses)} parameter servers; at most {protocol.MAX_SERVERS}")
    return addresses


def partition_bytes(partition_mb=None, environ=os.environ):
    """The partition size in bytes: `partition_mb` (MiB), else $DISTRAIN_PS_PARTITION_MB, else 4 MiB."""
    source, variable = "partition_mb=", protocol.PARTITION_ENVIRONMENT_VARIABLE
    if partition_mb is None and environ.get(variable):
        partition_mb, source = environ[variable], f"${variable}"
    if partition_mb is None:
        return DEFAULT_PARTITION_BYTES
    try:
        size = float(partition_mb)
    except (TypeError, ValueError):
        size = math.nan
    if not (math.isfinite(size) and size * 2 ** 20 >= 1):
        raise ValueError(f"{source}: the parameter server's partition size must be a positive number of MiB "
                         f"(the most one server gets of a large allreduce at once; default "
                         f"{DEFAULT_PARTITION_BYTES // 2 ** 20}), got {partition_mb!r}")
    return int(size * 2 ** 20)


def plan(count, itemsize, partition, servers):
    """The slices of an allreduce of `count` elements: [(start, stop, server)], or None to send it whole to
    server 0 (no more than one partition). NOTE [ Partitions on several servers ]."""
    per_partition = max(1, partition // itemsize)
    if count <= per_partition:
        return None
    pieces = min(count, servers * math.ceil(math.ceil(count / per_partition) / servers))
    base, extra = divmod(count, pieces)
    slices, start = [], 0
    for piece in range(pieces):
        stop = start + base + (piece < extra)
        slices.append((start, stop, piece % servers))
        start = stop
    return slices


class PartitionedHandle(Handle):
    """An allreduce whose slices are in flight on several servers; `wait()` returns once every slice's answer
    has been copied into place and `finish` (the mean's division, a device copy) has run."""

    def __init__(self, parts, finish):
        self.parts = parts  # one client.PSHandle per slice
        self.finish = finish
        self.done = False

    def is_completed(self):
        if not self.done and all(part.is_completed() for part in self.parts):
            if any(part.error is not None for part in self.parts):
                return True  # wait() raises it
            self._complete()
        return self.done

    def wait(self, timeout=None):
        if not self.done:
            for part in self.parts:  # each waits with its server's grace; a lost or failing server raises here
                part.wait(timeout)
            self._complete()

    def _complete(self):
        self.done = True
        self.finish()


def check_slices_fit(slices, connections, itemsize, rank, what):
    """Refuse, before anything is sent, a plan whose slices one of the servers would refuse (a partition size
    over a server's message limit): a refusal midway would leave the ranks' collective counts apart."""
    for start, stop, server in slices:
        limit = connections[server].max_message_bytes
        if (stop - start) * itemsize > limit:
            raise CommunicatorError(
                f"rank {rank}: {what} would send partitions of {(stop - start) * itemsize} bytes to the parameter "
                f"server at {connections[server].address}, over its limit of {limit} bytes: lower the partition "
                f"size (${protocol.PARTITION_ENVIRONMENT_VARIABLE}, --partition-mb) below "
                f"{limit / 2 ** 20:g} MiB")


__all__ = ["DEFAULT_PARTITION_BYTES", "PartitionedHandle", "check_slices_fit", "partition_bytes", "plan",
           "server_addresses"]
