"""distrain.horovod's calls on 2 and 3 ranks, mpi and ps, against NumPy; and what needs no second process."""
import os
import sys

import numpy
import pytest

import distrain
import distrain.distributed as dist
import distrain.horovod as hvd
from distrain.comm.base import Handle
from distrain.comm.local import LocalCommunicator
from tests.process_group import run_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "collectives_script.py")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
@pytest.mark.parametrize("ranks", [2, 3])
def test_every_hvd_call_matches_numpy(backend, ranks):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = run_group([sys.executable, "-m", "distrain.launch", "-n", str(ranks), "--backend", backend, SCRIPT], 200,
                       merge_output=True, env=env)
    assert result.returncode == 0, result.stdout
    for rank in range(ranks):
        assert f"rank {rank} ok" in result.stdout, result.stdout


def test_a_call_before_init_says_to_call_hvd_init():
    assert not hvd.is_initialized()
    for call in (hvd.rank, hvd.size, lambda: hvd.allreduce(distrain.zeros(2)), lambda: hvd.broadcast_object(1),
                 lambda: hvd.DistributedOptimizer(distrain.optim.SGD([distrain.zeros(2, requires_grad=True)], lr=1))):
        with pytest.raises(hvd.HorovodError, match=r"has not been initialized; call hvd.init\(\) first"):
            call()


class PendingHandle(Handle):
    """A collective that completes only when the test says so."""

    def __init__(self):
        self.finished = False

    def is_completed(self):
        return self.finished

    def wait(self):
        assert self.finished, "synchronize() waited on a collective the test had not finished"


class SlowCommunicator(LocalCommunicator):
    """A world of two whose allreduce_async stays in flight until the test finishes it (then: the sum is 2x)."""

    size = 2

    def __init__(self):
        super().__init__()
        self.started = []

    def allreduce_async(self, array, op="sum"):
        handle = PendingHandle()
        self.started.append((array, handle))
        return handle


def test_allreduce_async_is_in_flight_until_synchronize(monkeypatch):
    """The _async allreduce is the communicator's non-blocking one: poll() is False until it completes."""
    comm = SlowCommunicator()
    monkeypatch.setattr(dist, "_communicator", comm)
    handle = hvd.allreduce_async(distrain.tensor([1.0, 3.0]), op=hvd.Average)
    assert len(comm.started) == 1 and hvd.poll(handle) is False
    array, pending = comm.started[0]
    array *= 2  # the other rank's values arrive
    pending.finished = True
    assert hvd.poll(handle) is True
    numpy.testing.assert_array_equal(hvd.synchronize(handle).numpy(), [1.0, 3.0])


def test_init_joins_the_world_and_second_init_keeps_it(monkeypatch):
    for variable in ("DISTRAIN_BACKEND", "RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS",
                     "DISTRAIN_PS_ADDRESS"):
        monkeypatch.delenv(variable, raising=False)
    hvd.init()
    try:
        comm = dist.get_communicator()
        hvd.init()
        assert dist.get_communicator() is comm and (hvd.rank(), hvd.size(), hvd.local_size()) == (0, 1, 1)
        assert not hvd.mpi_threads_supported() and not hvd.gloo_built()
        with pytest.raises(hvd.HorovodError, match=r"hvd.init\(comm=...\): distrain forms the world"):
            hvd.init(comm=[0, 1])
    finally:
        hvd.shutdown()
    assert not hvd.is_initialized()


def test_distributed_optimizer_refuses_what_it_cannot_do():
    comm = LocalCommunicator()
    layer = distrain.nn.Linear(2, 2)

    def wrap(**options):
        return hvd.DistributedOptimizer(distrain.optim.SGD(layer.parameters(), lr=0.1), layer.named_parameters(),
                                        comm=comm, **options)

    for options, message in (({"op": hvd.Product}, "not supported for gradients"),
                             ({"compression": "int8"}, "compression='int8' is not supported"),
                             ({"op": hvd.Adasum, "compression": hvd.Compression.fp16}, "Adasum with Compression.fp16"),
                             ({"op": hvd.Sum, "gradient_predivide_factor": 2.0}, "op=hvd.Average only"),
                             ({"backward_passes_per_step": 0}, "backward_passes_per_step must be an int >= 1")):
        with pytest.raises(hvd.HorovodError, match=message):
            wrap(**options)
    with pytest.raises(hvd.HorovodError, match=r"optimizer's parameters \[1\] .* are not in it"):
        hvd.DistributedOptimizer(distrain.optim.SGD(layer.parameters(), lr=0.1), [("weight", layer.weight)],
                                 comm=comm)


def test_zero_grad_between_backward_and_step_is_refused_and_passes_beyond_the_count_too():
    """Horovod's two rules for DistributedOptimizer: no zero_grad() while gradients wait to be combined, and no
    more backward passes than backward_passes_per_step before step()."""
    layer = distrain.nn.Linear(2, 1)
    optimizer = hvd.DistributedOptimizer(distrain.optim.SGD(layer.parameters(), lr=0.1), layer.named_parameters(),
                                         backward_passes_per_step=2, comm=LocalCommunicator())
    x = distrain.ones(1, 2)
    layer(x).sum().backward()
    with pytest.raises(distrain.DistrainError, match=r"zero_grad\(\) was called after loss.backward\(\)"):
        optimizer.zero_grad()
    layer(x).sum().backward()
    with pytest.raises(distrain.DistrainError, match="more than backward_passes_per_step=2 times"):
        layer(x).sum().backward()


def test_an_lr_scheduler_accepts_the_distributed_optimizer():
    layer = distrain.nn.Linear(2, 1)
    optimizer = hvd.DistributedOptimizer(distrain.optim.SGD(layer.parameters(), lr=0.1), layer.named_parameters(),
                                         comm=LocalCommunicator())
    scheduler = distrain.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    layer(distrain.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_the_old_names_are_horovods_objects():
    import distrain.parallel

    assert distrain.parallel.DistributedOptimizer is hvd.DistributedOptimizer is dist.DistributedOptimizer
    assert distrain.parallel.broadcast_parameters is hvd.broadcast_parameters is dist.broadcast_parameters
