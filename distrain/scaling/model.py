"""Predicted step time and scaling efficiency of data-parallel training on N ranks.

Weak scaling, as data-parallel training is run: every rank keeps its batch, so N ranks do N
times the work per step, and a step takes one rank's compute plus whatever communication
backward does not hide (overlap.py), the exchange priced by costs.py. Efficiency is
one rank's step (no communication at all) over the N-rank step: the share of N times one
rank's throughput that N ranks reach.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import costs, overlap

DEFAULT_BUCKET_BYTES = 25 * 2 ** 20  # DistributedDataParallel's bucket_cap_mb
ALGORITHMS = ("ring", "halving-doubling", "ps")


@dataclass(frozen=True)
class Workload:
    """One rank's step: forward, backward and optimizer seconds, the gradient's bytes, the bucket size."""

    forward_s: float
    backward_s: float
    optimizer_s: float
    gradient_bytes: int
    bucket_bytes: int = DEFAULT_BUCKET_BYTES

    @property
    def compute_s(self):
        return self.forward_s + self.backward_s + self.optimizer_s


def exchange(algorithm, ranks, link, servers=1, server_link=None):
    """n_bytes -> seconds of one bucket's exchange on `ranks` ranks."""
    if algorithm == "ps":
        return lambda n_bytes: costs.parameter_server(n_bytes, ranks, servers, link, server_link)
    if algorithm not in costs.ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; one of {ALGORITHMS}")
    formula = costs.ALGORITHMS[algorithm]
    return lambda n_bytes: formula(n_bytes, ranks, link)


@dataclass(frozen=True)
class Prediction:
    ranks: int
    step_s: float
    exposed_communication_s: float  # the step's time beyond one rank's compute
    communication_s: float  # every bucket's exchange, end to end, were nothing hidden
    efficiency: float


def predict(workload, ranks, algorithm, link, servers=1, server_link=None, overlapped=True):
    """The Prediction for `ranks` ranks (1: the compute alone)."""
    if ranks <= 1:
        return Prediction(1, workload.compute_s, 0.0, 0.0, 1.0)
    price = exchange(algorithm, ranks, link, servers, server_link)
    sizes = overlap.buckets(workload.gradient_bytes, workload.bucket_bytes)
    step = overlap.step_time(workload.forward_s, workload.backward_s, sizes, price, workload.optimizer_s, overlapped)
    return Prediction(int(ranks), step, step - workload.compute_s, sum(price(size) for size in sizes),
                      workload.compute_s / step)


def table(workload, ranks_list, algorithm, link, servers=None, server_link=None, overlapped=True):
    """Predictions for each count in `ranks_list`. For "ps", `servers` None means as many servers as ranks
    (BytePS's layout); an int keeps that many."""
    return [predict(workload, ranks, algorithm, link, ranks if servers is None else servers, server_link, overlapped)
            for ranks in ranks_list]
