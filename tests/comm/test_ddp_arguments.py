"""DistributedDataParallel takes PyTorch's arguments in PyTorch's order, from PyTorch's import path."""
import os
import sys

import numpy
import pytest

import distrain
import distrain.nn as nn
from distrain.comm.local import LocalCommunicator
from tests.process_group import run_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_import_path_of_pytorch_programs():
    import distrain.nn.parallel
    from distrain.nn.parallel import DistributedDataParallel

    assert DistributedDataParallel is distrain.parallel.DistributedDataParallel
    assert distrain.nn.parallel.DistributedDataParallel is DistributedDataParallel


def test_pytorchs_keyword_arguments_are_accepted_and_the_meaningful_ones_honoured():
    comm = LocalCommunicator()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ddp = distrain.nn.parallel.DistributedDataParallel(
        model, device_ids=None, output_device=None, dim=0, broadcast_buffers=False, init_sync=True,
        process_group=comm, bucket_cap_mb=0.0001, find_unused_parameters=True, check_reduction=False,
        gradient_as_bucket_view=True, static_graph=True)
    assert ddp.comm is comm and ddp.broadcast_buffers is False
    assert len(ddp._buckets) > 1  # bucket_cap_mb honoured: 100 bytes per bucket
    x = distrain.randn(5, 4)
    ddp(x).sum().backward()
    expected = model[0].weight.grad.numpy().copy()
    model.zero_grad()
    model(x).sum().backward()  # one rank: the average is the rank's own gradient
    numpy.testing.assert_array_equal(model[0].weight.grad.numpy(), expected)


def test_a_positional_second_argument_is_device_ids_as_in_pytorch():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"device_ids=\[0\] is for a module on one GPU.*\['cpu'\].*device_ids=None"):
        distrain.nn.parallel.DistributedDataParallel(model, [0], process_group=LocalCommunicator())
    distrain.nn.parallel.DistributedDataParallel(model, None, process_group=LocalCommunicator())


def test_init_sync_false_does_not_broadcast_and_two_communicators_are_refused():
    class Counting(LocalCommunicator):
        broadcasts = 0

        def broadcast(self, array, root=0):
            Counting.broadcasts += 1
            return super().broadcast(array, root)

    distrain.nn.parallel.DistributedDataParallel(nn.Linear(3, 2), process_group=Counting(), init_sync=False)
    assert Counting.broadcasts == 0
    distrain.nn.parallel.DistributedDataParallel(nn.Linear(3, 2), process_group=Counting())
    assert Counting.broadcasts > 0
    with pytest.raises(ValueError, match="process_group or comm, not both"):
        distrain.nn.parallel.DistributedDataParallel(nn.Linear(3, 2), process_group=LocalCommunicator(),
                                                     comm=LocalCommunicator())


@pytest.mark.timeout(200)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
def test_ddp_over_subgroups_averages_within_each_group(backend):
    """process_group=new_group(...): two pairs train two replicas at once (tests/comm/ddp_subgroup_script.py)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_subgroup_script.py")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    result = run_group([sys.executable, "-m", "distrain.launch", "-n", "4", "--backend", backend, script], 150,
                       merge_output=True, env=env)
    assert result.returncode == 0, result.stdout
    assert all(f"rank {rank} ok" in result.stdout for rank in range(4)), result.stdout
