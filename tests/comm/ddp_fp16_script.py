"""Run under `mpiexec -n N`: gradient_compression="fp16" scales each bucket by 1/N before the float16 sum.

Every rank's gradient is about 40000, which float16 holds (its largest value is 65504), but a sum of two
of them is not: reduced without the 1/N pre-scaling (summed, then divided) the result is inf. The reduced
gradient must be finite, equal the float64 mean of all ranks' gradients to float16 precision, hold only
float16 values (it travelled as float16) and be the same on every rank. Prints "rank R ok".
"""
import numpy as np

import distrain
import distrain.distributed as dist
import distrain.nn as nn
from distrain.parallel import DistributedDataParallel

comm = dist.init(timeout=30)
rank, size = comm.rank, comm.size
SHAPES = ((3, 8), (50,))  # two parameters in two buckets (bucket_cap_mb below): each bucket is compressed


class Scaled(nn.Module):
    """loss = sum(weight_i * x_i): the gradient of weight_i is x_i, whatever the rank chooses."""

    def __init__(self):
        super().__init__()
        self.first = nn.Parameter(distrain.ones(*SHAPES[0]))
        self.second = nn.Parameter(distrain.ones(*SHAPES[1]))

    def forward(self, x_first, x_second):
        return (self.first * x_first).sum() + (self.second * x_second).sum()


def gradients(r):
    """Rank r's gradients: 30000..50000, different on every rank and element, each exact in float16."""
    rng = np.random.default_rng(r)
    return [rng.integers(30000, 50000, size=shape).astype(np.float32) // 32 * 32 for shape in SHAPES]


model = DistributedDataParallel(Scaled(), bucket_cap_mb=60 * 4 / 2 ** 20, gradient_compression="fp16")
assert len(model._buckets) == 2, model._buckets
model(*(distrain.tensor(g) for g in gradients(rank))).backward()
for index, parameter in enumerate((model.module.first, model.module.second)):
    expected = np.mean([gradients(r)[index].astype(np.float64) for r in range(size)], axis=0)
    got = parameter.grad.numpy()
    assert np.isfinite(got).all(), f"rank {rank} of {size}: parameter {index} reduced to {got} (float16 overflow)"
    # each of the N scaled values and N - 1 partial sums is rounded once to float16 (relative error 2^-11 each)
    np.testing.assert_allclose(got, expected, rtol=2 * size * 2.0 ** -11, atol=0,
                               err_msg=f"rank {rank} of {size}: parameter {index}")
    assert np.array_equal(got, got.astype(np.float16).astype(np.float32)), f"parameter {index}: not float16 on the wire"
    assert (comm.allgather(got) == got).all(), f"parameter {index}: ranks disagree"

dist.shutdown()
print(f"rank {rank} ok", flush=True)
