"""What one gradient exchange costs: the alpha-beta-gamma model of the collective algorithms distrain uses.

A message of n bytes between two ranks takes alpha + n*beta seconds (alpha: the latency of one
message; beta: seconds per byte, 1/bandwidth), and adding n bytes into a buffer takes n*gamma.
The formulas are those of Thakur, Rabenseifner and Gropp, "Optimization of Collective
Communication Operations in MPICH" (2005), which MPICH's allreduce follows, and of BytePS
(Jiang et al., OSDI 2020) for a parameter server:

    ring                  2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma
    recursive halving     2 log2(p) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma       (Rabenseifner:
      and doubling        reduce-scatter by halving, allgather by doubling; p not a power of two
                          adds a step before and after: 2 (alpha + n beta) + n gamma)
    parameter server      every worker pushes n and pulls n over its own link; S servers each take
                          p n / S in and out over theirs:  2 alpha + max(2 n beta_w, 2 p n beta_s / S)
                          + p n gamma / S

Ring and halving-doubling move the same bytes; they differ in messages (2(p-1) against
2 log2 p), so halving-doubling wins for small buckets on many ranks and ties for large ones.
The parameter server moves 2n per worker whatever p, against the ring's 2(p-1)/p n: with as
many servers (and server links) as workers it is as fast as the ring, with fewer it is the
servers' links that limit (BytePS's argument for spare CPU machines as servers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Link:
    """One rank's link: alpha (s per message), beta (s per byte), gamma (s per byte added)."""

    alpha: float
    beta: float
    gamma: float = 0.0

    @classmethod
    def of(cls, latency_s, gbit_per_s, reduce_gb_per_s=None):
        """A link from a latency and a bandwidth in Gbit/s (and a summing rate in GB/s, optional)."""
        gamma = 0.0 if reduce_gb_per_s is None else 1.0 / (reduce_gb_per_s * 1e9)
        return cls(float(latency_s), 8.0 / (gbit_per_s * 1e9), gamma)

    def describe(self):
        rate = 8.0 / self.beta / 1e9 if self.beta else math.inf
        return f"latency {self.alpha * 1e6:.1f} us, {rate:.3g} Gbit/s"


def ring_allreduce(n_bytes, ranks, link):
    """Seconds for a ring allreduce of `n_bytes` over `ranks` ranks (0 for one rank)."""
    p = int(ranks)
    if p <= 1:
        return 0.0
    share = (p - 1) / p
    return 2 * (p - 1) * link.alpha + 2 * share * n_bytes * link.beta + share * n_bytes * link.gamma


def halving_doubling_allreduce(n_bytes, ranks, link):
    """Seconds for a recursive-halving-and-doubling (Rabenseifner) allreduce of `n_bytes` over `ranks` ranks."""
    p = int(ranks)
    if p <= 1:
        return 0.0
    power = 2 ** int(math.floor(math.log2(p)))
    share = (power - 1) / power
    time = 2 * math.log2(power) * link.alpha + 2 * share * n_bytes * link.beta + share * n_bytes * link.gamma
    if power != p:  # the ranks beyond a power of two hand their data to a partner first, and take the result after
        time += 2 * (link.alpha + n_bytes * link.beta) + n_bytes * link.gamma
    return time


def parameter_server(n_bytes, ranks, servers, worker_link, server_link=None):
    """Seconds for a push and pull of `n_bytes` by each of `ranks` workers through `servers` servers (BytePS)."""
    p, s = int(ranks), int(servers)
    if p <= 1 and s <= 0:
        return 0.0
    server_link = worker_link if server_link is None else server_link
    moving = max(2 * n_bytes * worker_link.beta, 2 * p * n_bytes * server_link.beta / s)
    return 2 * max(worker_link.alpha, server_link.alpha) + moving + p * n_bytes * server_link.gamma / s


ALGORITHMS = {
    "ring": ring_allreduce,
    "halving-doubling": halving_doubling_allreduce,
}
