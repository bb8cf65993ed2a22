"""A Horovod MNIST-style program gives its PyTorch twin's losses (torch DDP + gloo under torchrun).

mnist_hvd.py is written as horovod/examples/pytorch writes it (hvd.init, DistributedSampler
with num_replicas=hvd.size(), lr scaled by size, broadcast_parameters and
broadcast_optimizer_state after rank 0 alone 'resumed', DistributedOptimizer with
named_parameters, metric_average through hvd.allreduce); mnist_torch_twin.py is the same
training in PyTorch. Same data, seeds and starting weights: every loss and metric agrees to
float32 tolerance (float16 tolerance with Compression.fp16 against torch's fp16_compress_hook).
"""
import functools
import os
import sys

import numpy
import pytest

from tests.compat.twins import json_results

HERE = os.path.dirname(os.path.abspath(__file__))


def results(command, ranks, clean_exit=True):
    return json_results(command, ranks, cwd=HERE, oracle=not clean_exit)


@functools.lru_cache(maxsize=None)
def torch_twin(ranks, variant):
    return results([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                    "mnist_torch_twin.py", variant], ranks, clean_exit=False)
    # clean_exit=False: torch with a Python comm hook (fp16) now and then aborts at interpreter exit after every rank
    # printed its result ("terminate called without an active exception"); the results are whole, so they count


@pytest.mark.timeout(600)
@pytest.mark.parametrize("ranks, backend, variant", [(2, "mpi", "plain"), (2, "ps", "plain"), (3, "mpi", "plain"),
                                                     (3, "ps", "plain"), (2, "mpi", "accumulate"),
                                                     (3, "ps", "accumulate"), (2, "mpi", "fp16"), (3, "ps", "fp16")])
def test_horovod_program_matches_its_torch_ddp_twin(ranks, backend, variant):
    ours = results([sys.executable, "-m", "distrain.launch", "-n", str(ranks), "--backend", backend, "mnist_hvd.py",
                    variant], ranks)
    theirs = torch_twin(ranks, variant)
    tolerance = {"rtol": 2e-3, "atol": 2e-3} if variant == "fp16" else {"rtol": 1e-4, "atol": 1e-5}
    for rank in range(ranks):
        assert len(ours[rank]["losses"]) == len(theirs[rank]["losses"]) == 2 * 240 // (10 * ranks)
        numpy.testing.assert_allclose(ours[rank]["losses"], theirs[rank]["losses"], err_msg=f"rank {rank}",
                                      **tolerance)
        numpy.testing.assert_allclose(ours[rank]["metrics"], theirs[rank]["metrics"], err_msg=f"rank {rank}",
                                      **tolerance)
    # the losses move: the ranks train (a broken reduction would not match the twin, a frozen one neither)
    assert ours[0]["losses"][0] != ours[0]["losses"][-1]
