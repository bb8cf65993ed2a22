"""Each optimisation pass, switched on alone: it does its job, and the results stay bit-identical to eager."""
import numpy as np
import pytest

import distrain
import distrain.models
from distrain import nn
from distrain.engine import jit
from distrain.engine.jit.optimize import ALL_PASSES
from distrain.engine.jit.passes.cuda_fusion import kernel_for
from distrain.engine.jit.passes.fusion import find_groups

from .steps import training_step


def randn(*shape, seed=0):
    return distrain.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def replayed(function, *inputs, passes):
    traced = jit.trace(function, inputs, passes=passes)
    out = traced(*inputs)
    return traced, out.detach().numpy() if isinstance(out, distrain.Tensor) else out


def test_dead_code_is_removed_and_draws_are_kept():
    def function(x):
        unused = (x * 3).exp().sum()  # noqa: F841  (computed and never used)
        kept = distrain.nn.functional.dropout(x, 0.5)  # a draw: kept even if its result were unused
        return kept * 2

    x = randn(6)
    distrain.manual_seed(0)
    eager = function(x).numpy()
    distrain.manual_seed(0)
    traced, _ = replayed(function, x, passes=("dead_code",))
    assert traced.program.report["dead instructions removed"] >= 3
    distrain.manual_seed(0)
    assert np.array_equal(traced(x).numpy(), eager)
    assert any(instruction.kind == "draw" for instruction in traced.program.graph.instructions)


def test_constant_folding_computes_shape_only_values_once():
    weight = distrain.nn.Parameter(randn(5))

    def function(x):
        loss = (weight * x).sum()
        loss.backward()  # its seed, ones_like(loss), depends on the (static) shape only
        return loss + distrain.zeros_like(x).sum()

    x = randn(5)
    traced, out = replayed(function, x, passes=("constant_folding",))
    assert traced.program.report["instructions folded into constants"] >= 1
    assert len(traced.program.graph.instructions) < len(traced.graph.instructions)
    weight.grad = None
    assert np.array_equal(out, function(x).detach().numpy())
    assert np.array_equal(weight.grad.numpy(), x.numpy())


def test_common_subexpressions_are_computed_once():
    def function(x, y):
        return (x * y).exp() + (x * y).exp()

    x, y = randn(4), randn(4, seed=1)
    traced, out = replayed(function, x, y, passes=("common_subexpressions",))
    assert traced.program.report["repeated instructions merged"] == 2
    assert np.array_equal(out, function(x, y).numpy())


def test_the_buffer_plan_reuses_memory_and_runs_chains_in_place():
    def function(x):
        return ((x * 2).exp() + 1).tanh() * x

    x = randn(64, 32)
    traced, out = replayed(function, x, passes=("buffers",))
    plan = traced.program.plan
    assert plan.in_place >= 2
    assert np.array_equal(out, function(x).numpy())
    buffers = {name: id(array) for name, array in plan.buffers.items()}
    again = traced(randn(64, 32, seed=3))  # the same buffers, reused by the next replay
    assert {name: id(array) for name, array in plan.buffers.items()} == buffers
    assert np.array_equal(again.detach().numpy(), function(randn(64, 32, seed=3)).numpy())
    assert not np.shares_memory(out, again.detach().numpy())  # results handed out are never buffers


def test_sharing_buffers_by_liveness_saves_memory_on_a_training_step():
    model = distrain.models.create("cnn", input_shape=(3, 8, 8), width=8)
    step = jit.compile_step(model, nn.CrossEntropyLoss(), distrain.optim.SGD(model.parameters(), lr=0.1))
    step(randn(4, 3, 8, 8), distrain.tensor([1, 2, 3, 0]))
    plan = step.traced.program.plan
    assert plan.unshared_bytes > plan.block_bytes > 0
    assert plan.bytes_saved == plan.unshared_bytes - plan.block_bytes
    assert plan.allocations_after < plan.allocations_before


def test_fusion_finds_elementwise_chains_and_generates_one_kernel_source_each():
    def function(x, b):
        return ((x * 2.0 + b).tanh() - 1.0).exp()

    x, b = randn(8, 4), randn(8, 4, seed=1)
    traced, out = replayed(function, x, b, passes=("fusion",))
    assert np.array_equal(out, function(x, b).numpy())
    groups = find_groups(traced.graph)
    assert [group.names for group in groups] == [("multiply", "add", "tanh", "subtract", "exp")]
    kernel, arguments = kernel_for(traced.graph, groups[0])
    assert len(arguments) == 2 and kernel.in_params == "float in0, float in1"
    assert kernel.body.splitlines() == ["float t0 = in0 * ((float)2.0);", "float t1 = t0 + in1;",
                                        "float t2 = tanh(t1);", "float t3 = t2 - ((float)1.0);",
                                        "float t4 = exp(t3);", "out = t4;"]


@pytest.mark.parametrize("passes", [(), *[(name,) for name in ALL_PASSES], None])
def test_every_pass_alone_and_all_together_train_bit_identically(passes):
    def run(compiled):
        distrain.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 3))
        optimizer = distrain.optim.Adam(model.parameters(), lr=1e-2)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
        step = training_step(model, loss_fn, optimizer, compiled, passes=passes)
        losses = [step(randn(6, 10, seed=i), distrain.tensor(np.arange(6) % 3)).item() for i in range(20)]
        return losses, model.state_dict()

    (eager_losses, eager_state), (graph_losses, graph_state) = run(False), run(True)
    assert eager_losses == graph_losses
    for name, value in eager_state.items():
        assert np.array_equal(value.numpy(), graph_state[name].numpy()), name


def test_an_unknown_pass_is_named():
    with pytest.raises(distrain.errors.ArgumentError, match=r"unknown pass\(es\) \['fuse'\]"):
        jit.trace(lambda x: x + 1, randn(2), passes=("fuse",))
