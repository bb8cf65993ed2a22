"""DistributedDataParallel and DistributedOptimizer refuse to average gradients of different steps.

NOTE [ sequence check ] in parallel.py: every reduction ends with a MAX allreduce of
(position, -position), so ranks at different forward counts raise on every rank, naming each
rank's count; a backward that reaches gradients already averaged for this forward raises
on its rank. On real ranks (sequence_check_script.py under `mpiexec -n 2`) and, for the
refusals one rank can make alone, in this process with a world of one.

Before the check all of these ran on silently: the 2-rank cases paired buckets of different
steps (same sizes on every rank), and a second backward left its gradients local to its rank
(DDP) or added them into buckets already on the wire (DistributedOptimizer).
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
CASES = ["normal", "no_sync_on_rank_0", "extra_forward_on_rank_1"]


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


def test_a_second_backward_after_ddp_averaged_the_gradients_raises_naming_the_rank():
    model, x = model_and_batch()
    ddp = DistributedDataParallel(model, comm=LocalCommunicator())
    out = ddp(x)
    out.sum().backward(retain_graph=True)
    averaged = [p.grad.numpy().copy() for p in model.parameters()]
    with pytest.raises(DistrainError, match=r"DistributedDataParallel: rank 0: a second backward reached the model's "
                                            r"gradients after they were averaged"):
        (out * 2).sum().backward()
    model.zero_grad()
    ddp(x).sum().backward()  # the next forward's backward is welcome again, and averaged as before
    for parameter, before in zip(model.parameters(), averaged):
        np.testing.assert_array_equal(parameter.grad.numpy(), before)


def test_two_backwards_before_distributed_optimizer_step_raise():
    model, x = model_and_batch()
    optimizer = DistributedOptimizer(distrain.optim.SGD(model.parameters(), lr=0.1), model.named_parameters(),
                                     comm=LocalCommunicator())
    optimizer.zero_grad()
    model(x).sum().backward()
    with pytest.raises(DistrainError, match=r"arrived twice before its average was taken \(two backwards per step\?\)"):
        model(x).sum().backward()
