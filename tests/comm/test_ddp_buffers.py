"""DistributedDataParallel's buffers (BatchNorm statistics) follow rank 0, at construction and on each forward.

The ranks start with different statistics, so a DDP that skips either broadcast leaves some rank with values
the closed form in ddp_buffers_script.py does not give; the script also checks broadcast_buffers=False.
"""
import os

import pytest

from .test_mpi import assert_every_rank_ok, run_ranks

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_buffers_script.py")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("ranks", [2, 3])
def test_every_rank_ends_with_rank_0s_buffer_chain(ranks):
    code, output = run_ranks(ranks, script=SCRIPT, timeout=120)
    assert code == 0, output
    assert_every_rank_ok(output, ranks)
