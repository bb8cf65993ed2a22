"""Guards: every replay checks the inputs and the model, retraces within a bound, or says what differs."""
import numpy as np
import pytest

import distrain
from distrain import nn
from distrain.engine import jit
from distrain.engine.jit import CaptureError, GuardError


def randn(*shape, dtype=np.float32, seed=0):
    return distrain.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def test_other_shapes_retrace_and_each_shape_keeps_its_graph():
    model = nn.Linear(4, 2)
    traced = jit.trace(model, randn(3, 4))
    for batch in (5, 3, 5, 7):
        x = randn(batch, 4, seed=batch)
        assert np.array_equal(traced(x).detach().numpy(), model(x).detach().numpy())
    assert traced.graphs == 3 and traced.captures == 3


def test_without_retracing_a_different_call_names_every_difference():
    model = nn.Linear(4, 2)
    traced = jit.trace(model, randn(3, 4), retrace=False)
    with pytest.raises(GuardError) as caught:
        traced(randn(5, 4, dtype=np.float64))
    message = str(caught.value)
    assert "input 0: shape was (3, 4) when captured, is (5, 4) now" in message, message
    assert "input 0: dtype was float32 when captured, is float64 now" in message, message


def test_the_cache_of_graphs_is_bounded():
    traced = jit.trace(lambda x: x * 2, randn(1), max_graphs=2)
    traced(randn(2))
    with pytest.raises(GuardError, match=r"2 graphs are captured already .*\n.*shape was \(2,\) .* is \(3,\) now"):
        traced(randn(3))


def test_strides_and_grad_mode_are_part_of_the_key():
    traced = jit.trace(lambda x: x + 1, randn(3, 4), retrace=False)
    with pytest.raises(GuardError, match="strides"):
        traced(randn(4, 3).t())
    with pytest.raises(GuardError, match="grad mode was on when captured and is off now"):
        with distrain.no_grad():
            traced(randn(3, 4))


def test_a_changed_model_is_named_when_retracing_is_off():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    traced = jit.trace(model, randn(2, 3), retrace=False)
    model[0].weight.requires_grad_(False)
    with pytest.raises(GuardError, match=r"`0.weight.requires_grad` is False now"):
        traced(randn(2, 3))
    model[0].weight.requires_grad_(True)
    assert np.array_equal(traced(randn(2, 3)).detach().numpy(), model(randn(2, 3)).detach().numpy())
    model.eval()
    with pytest.raises(GuardError, match=r"training/eval modes differ"):
        traced(randn(2, 3))


def test_changes_to_other_modules_do_not_disturb_the_graph():
    model, other = nn.Linear(3, 3), nn.Linear(3, 3)
    traced = jit.trace(model, randn(2, 3), retrace=False)
    other.eval()
    other.extra = 5
    assert np.array_equal(traced(randn(2, 3)).detach().numpy(), model(randn(2, 3)).detach().numpy())
    assert traced.graphs == 1


def test_backward_through_a_traced_forward_explains_what_to_do_instead():
    model = nn.Linear(3, 1)
    traced = jit.trace(model, randn(2, 3))
    out = traced(randn(2, 3))
    with pytest.raises(CaptureError, match="compile_step"):
        out.sum().backward()


def test_an_optimizer_step_inside_a_traced_function_is_caught_and_compile_step_does_it():
    def make():
        distrain.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
        return model, distrain.optim.Adam(model.parameters(), lr=0.01)

    def step_of(model, optimizer):
        def step(x, y):
            optimizer.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            optimizer.step()
            return loss
        return step

    eager_model, eager_optimizer = make()
    graph_model, graph_optimizer = make()
    eager_step, graph_step = step_of(eager_model, eager_optimizer), step_of(graph_model, graph_optimizer)
    batches = [(randn(4, 5, seed=i), randn(4, 1, seed=100 + i)) for i in range(6)]
    with pytest.raises(CaptureError, match=r"Adam.step\(\) inside a traced function.*compile_step"):
        jit.trace(graph_step, batches[0])
    compiled = jit.compile_step(graph_model, lambda out, y: ((out - y) ** 2).mean(), graph_optimizer)
    eager_losses = [eager_step(x, y).item() for x, y in batches]
    graph_model.load_state_dict(make()[0].state_dict())  # the failed capture's eager step moved them
    graph_optimizer.state.clear()
    assert [compiled(x, y).item() for x, y in batches] == eager_losses
    for a, b in zip(eager_model.parameters(), graph_model.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())


def test_train_and_eval_each_keep_their_graph():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    traced = jit.trace(model, randn(2, 3))
    for _ in range(3):
        model.eval()
        assert np.array_equal(traced(randn(2, 3)).detach().numpy(), model(randn(2, 3)).detach().numpy())
        model.train()
        traced(randn(2, 3))
    assert traced.captures == 2 and traced.graphs == 2


def test_a_hook_or_a_patched_forward_after_capture_is_seen():
    model = nn.Linear(3, 3)
    traced = jit.trace(model, randn(2, 3), retrace=False)
    handle = model.register_forward_hook(lambda module, inputs, output: output * 2)
    with pytest.raises(GuardError, match="_forward_hooks"):
        traced(randn(2, 3))
    handle.remove()
    assert np.array_equal(traced(randn(2, 3)).detach().numpy(), model(randn(2, 3)).detach().numpy())
    model.forward = lambda x: x
    with pytest.raises(GuardError, match="new attribute `forward`"):
        traced(randn(2, 3))
