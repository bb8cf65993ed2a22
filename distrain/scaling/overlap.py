"""One data-parallel step with its gradient buckets exchanged while backward runs.

Backward produces the gradient from the last layer to the first at a steady rate; a bucket
(bucket_cap_mb of the flat gradient, last parameters first: parallel.py) can leave once its
bytes have been produced, and the buckets share one way out, so bucket b's exchange starts
when it is ready and the one before it has finished. The optimizer runs once backward and
every exchange are done:

    ready_b  = backward * (bytes of buckets 1..b) / (all bytes)
    done_b   = max(ready_b, done_{b-1}) + exchange(bytes_b)
    step     = forward + max(backward, done_last) + optimizer

So communication hides behind backward until it is longer than backward; what remains is the
last bucket's exchange at least (the price of a bucket size). This assumes the exchange needs
no core that backward is using (a GPU with its own copy engines, a NIC); on a CPU whose cores
backward fills, less hides (NOTE [ MPI progress ] in parallel.py measured it), and the
validation against measured runs (README) says how much.
"""
from __future__ import annotations

import math


def buckets(gradient_bytes, cap_bytes):
    """The bucket sizes of a flat gradient of `gradient_bytes` in buckets of at most `cap_bytes`, in the order
    backward fills them."""
    if gradient_bytes <= 0:
        return []
    count = max(1, math.ceil(gradient_bytes / cap_bytes))
    sizes = [cap_bytes] * (count - 1)
    return sizes + [gradient_bytes - cap_bytes * (count - 1)]


def step_time(forward_s, backward_s, bucket_bytes, exchange, optimizer_s=0.0, overlap=True):
    """Seconds of one step (module docstring); `exchange(n_bytes)` -> seconds. Without overlap every bucket
    waits for the end of backward."""
    total = float(sum(bucket_bytes))
    done, produced = 0.0, 0.0
    for size in bucket_bytes:
        produced += size
        ready = backward_s * produced / total if overlap else backward_s
        done = max(ready, done) + exchange(size)
    return forward_s + max(backward_s, done) + optimizer_s
