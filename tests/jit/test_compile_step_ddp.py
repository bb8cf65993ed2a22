"""compile_step on a DistributedDataParallel model: the same parameters as eager DDP, bit for bit, on every rank.

Two ranks (threads) train through the parameter server (summed in rank order, so the
result does not depend on arrival order); the model has BatchNorm, so the buffer
broadcast at each forward is exercised, and each rank sees its own data. The replay
reduces the buckets after the backward rather than while it runs; the sums are the same.
"""
import numpy as np
import pytest

import distrain
from distrain import nn
from distrain.comm.ps.server import ParameterServer
from distrain.parallel import DistributedDataParallel

from ..comm.test_ps import run_ranks
from .steps import training_step

SECRET = "a-secret-for-the-compile-step-ddp-test-0123"
STEPS = 8


def make_model():
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))


distrain.manual_seed(0)
INITIAL = {name: value.numpy().copy() for name, value in make_model().state_dict().items()}


def train(communicator, compiled):
    model = make_model()  # the ranks are threads sharing one generator: start from fixed weights instead
    model.load_state_dict({name: distrain.tensor(value) for name, value in INITIAL.items()})
    ddp = DistributedDataParallel(model, comm=communicator, bucket_cap_mb=0.0002)  # several buckets
    optimizer = distrain.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(communicator.rank)  # each rank its own data
    batches = [(distrain.tensor(rng.standard_normal((5, 6)).astype(np.float32)),
                distrain.tensor(rng.integers(0, 3, 5))) for _ in range(STEPS)]
    step = training_step(ddp, loss_fn, optimizer, compiled)
    losses = [step(x, y).item() for x, y in batches]
    return losses, {name: value.numpy().copy() for name, value in model.state_dict().items()}


@pytest.mark.timeout(60)
def test_compiled_ddp_steps_equal_eager_ddp_steps_on_every_rank(monkeypatch):
    monkeypatch.setenv("DISTRAIN_PS_SECRET", SECRET)
    outcomes = {}
    for compiled in (False, True):
        server = ParameterServer(2).start()
        try:
            results, errors = run_ranks(server.address, 2, lambda comm: train(comm, compiled), secret=SECRET,
                                        timeout=20.0)
        finally:
            server.close()
        assert not errors, errors
        outcomes[compiled] = results
    for rank in range(2):
        eager_losses, eager_state = outcomes[False][rank]
        graph_losses, graph_state = outcomes[True][rank]
        assert eager_losses == graph_losses, rank
        for name, value in eager_state.items():
            assert np.array_equal(value, graph_state[name]), (rank, name)
    for name, value in outcomes[True][0][1].items():  # the ranks agree on parameters: gradients were averaged
        if "running" not in name and "num_batches" not in name:  # (statistics: rank 0's, then each rank's batch)
            assert np.array_equal(value, outcomes[True][1][1][name]), name
    assert outcomes[True][0][0] != outcomes[True][1][0]  # on different data
