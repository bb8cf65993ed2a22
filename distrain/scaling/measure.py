"""What the model needs from this machine: one rank's compute per step, and a link's alpha and beta.

compute: forward, backward and an SGD step of a model on a batch, timed here in distrain
(medians of `repeats` after warm-up steps). link: the times of allreduces of growing sizes in
a running job (the communicator of distrain.distributed.init), fitted by fit.ring_link; run it
under the launcher (`python -m distrain.launch -n P ... python -m distrain.scaling --probe`
does it for you: __main__.py).
"""
from __future__ import annotations

import statistics
import time

import numpy

from .model import Workload

PROBE_SIZES = tuple(2 ** k for k in range(12, 27, 2))  # 4 KiB .. 64 MiB


def compute(module, inputs, targets, repeats=20, warmup=3, bucket_bytes=None):
    """A Workload of `module` on one batch: median forward, backward and SGD-step seconds, its gradient bytes."""
    from .. import nn, optim

    optimizer = optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    forward, backward, step = [], [], []
    for index in range(warmup + repeats):
        optimizer.zero_grad()
        started = time.perf_counter()
        loss = nn.functional.cross_entropy(module(inputs), targets)
        middle = time.perf_counter()
        loss.backward()
        after = time.perf_counter()
        optimizer.step()
        ended = time.perf_counter()
        if index >= warmup:
            forward.append(middle - started)
            backward.append(after - middle)
            step.append(ended - after)
    gradient_bytes = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    extra = {} if bucket_bytes is None else {"bucket_bytes": int(bucket_bytes)}
    return Workload(statistics.median(forward), statistics.median(backward), statistics.median(step),
                    int(gradient_bytes), **extra)


def allreduce_times(comm, sizes=PROBE_SIZES, repeats=10):
    """{bytes: median seconds} of float32 allreduces on `comm` (every rank calls it; a barrier before each)."""
    times = {}
    for size in sizes:
        array = numpy.ones(size // 4, dtype=numpy.float32)
        samples = []
        for _ in range(repeats + 1):
            comm.barrier()
            started = time.perf_counter()
            comm.allreduce(array)
            samples.append(time.perf_counter() - started)
        times[size] = statistics.median(samples[1:])
    return times
