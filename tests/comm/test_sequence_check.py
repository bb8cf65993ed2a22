"""DistributedDataParallel and DistributedOptimizer refuse to average gradients of different steps.

NOTE [ sequence check ] in parallel.py: every reduction ends with a MAX allreduce of
(position, -position), so ranks at different backward counts raise on every rank, naming
each rank's count, while what PyTorch's DDP accepts still runs; two backwards before
DistributedOptimizer's step() raise on their rank (Horovod refuses them too). On real ranks
(sequence_check_script.py under `mpiexec -n 2`) and, for what one rank can see alone, in
this process with a world of one.

Before the check all of these ran on silently: the 2-rank cases paired buckets of different
steps (same sizes on every rank), and a second backward before DistributedOptimizer's step
added its gradients into buckets already on the wire.
"""
import os
import re

import numpy as np
import pytest

import distrain
import distrain.nn as nn
from distrain.comm.local import LocalCommunicator
from distrain.errors import DistrainError
from distrain.parallel import DistributedDataParallel, DistributedOptimizer

from .test_mpi import run_ranks

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sequence_check_script.py")
CASES = ["normal", "no_sync_on_rank_0", "extra_backward_on_rank_1"]


@pytest.mark.timeout(120)
def test_ranks_out_of_step_raise_on_every_rank_naming_both_counts_and_normal_training_is_unchanged():
    code, output = run_ranks(2, script=SCRIPT, timeout=100)
    assert code == 0, output
    reports = set(re.findall(r"rank (\d) (\w+) ok", output))
    assert reports == {(str(rank), case) for rank in range(2) for case in CASES}, output


def model_and_batch():
    distrain.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    x = distrain.tensor(np.random.default_rng(0).standard_normal((3, 4)))
    return model, x


def test_a_second_backward_after_ddp_averaged_the_gradients_accumulates_locally_as_in_pytorch():
    model, x = model_and_batch()
    ddp = DistributedDataParallel(model, comm=LocalCommunicator())
    out = ddp(x)
    out.sum().backward(retain_graph=True)
    averaged = [p.grad.numpy().copy() for p in model.parameters()]
    (out * 2).sum().backward()  # PyTorch's DDP lets it add into .grad, unreduced: so does distrain
    for parameter, before in zip(model.parameters(), averaged):
        np.testing.assert_allclose(parameter.grad.numpy(), 3 * before, rtol=1e-12)
    assert ddp._reducer.position == 2  # both backwards count (NOTE [ sequence check ])


def test_two_backwards_before_distributed_optimizer_step_raise():
    model, x = model_and_batch()
    optimizer = DistributedOptimizer(distrain.optim.SGD(model.parameters(), lr=0.1), model.named_parameters(),
                                     comm=LocalCommunicator())
    optimizer.zero_grad()
    model(x).sum().backward()
    with pytest.raises(DistrainError, match=r"arrived twice before its average was taken \(two backwards per step\?\)"):
        model(x).sum().backward()
