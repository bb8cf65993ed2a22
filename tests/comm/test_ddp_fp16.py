"""gradient_compression="fp16" averages to float16 precision without overflowing where the mean fits float16.

ddp_fp16_script.py gives every rank gradients near 40000: a reducer that sums them in float16 before
dividing by the world size (no 1/N pre-scaling) overflows to inf; one that scales wrongly misses the mean.
"""
import os

import pytest

from .test_mpi import assert_every_rank_ok, run_ranks

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_fp16_script.py")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("ranks", [2, 4])
def test_fp16_compression_gives_the_mean_of_gradients_whose_sum_overflows_float16(ranks):
    code, output = run_ranks(ranks, script=SCRIPT, timeout=120)
    assert code == 0, output
    assert_every_rank_ok(output, ranks)
