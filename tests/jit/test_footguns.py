"""The known ways static capture goes silently wrong elsewhere, each made loud or right here.

Every test runs the same function eagerly and through distrain.jit and compares bit for
bit (the eager run is the oracle), or asserts the error a user gets, with its location.
"""
import numpy as np
import pytest

import distrain
from distrain import nn
from distrain.engine import jit
from distrain.engine.jit import CaptureError


def arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [distrain.tensor(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]


def test_inputs_in_lists_and_dicts_are_all_inputs_not_constants():
    def function(pair, named):
        return pair[0] * pair[1] + named["bias"]

    a, b, c = arrays((3,), (3,), (3,))
    traced = jit.trace(function, ([a, b], {"bias": c}))
    d, e, f = arrays((3,), (3,), (3,), seed=1)
    replayed = traced([d, e], {"bias": f})
    assert np.array_equal(replayed.numpy(), function([d, e], {"bias": f}).numpy())
    assert len(traced.graph.inputs) == 3 and not traced.graph.constants


def test_a_python_value_beside_the_tensors_is_guarded_not_frozen():
    def function(x, scale):
        return x * scale

    (x,) = arrays((4,))
    traced = jit.trace(function, (x, 2.0))
    assert np.array_equal(traced(x, 3.0).numpy(), (x * 3.0).numpy())  # retraced for the new value
    assert traced.graphs == 2


def test_in_place_updates_of_inputs_happen_on_every_replay():
    def function(x, y):
        x += y  # the caller's tensor changes, eagerly and replayed
        return x * 2

    x, y = arrays((5,), (5,))
    traced = jit.trace(function, (x.clone(), y))
    first, second = arrays((5,), (5,), seed=3)
    expected_x = first.numpy() + second.numpy()
    out = traced(first, second)
    assert np.array_equal(first.numpy(), expected_x)
    assert np.array_equal(out.numpy(), expected_x * 2)


def test_dropout_draws_a_new_mask_on_every_replay_exactly_as_eager():
    model = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.5))
    (x,) = arrays((4, 6))
    distrain.manual_seed(7)
    eager = [model(x).detach().numpy() for _ in range(3)]
    distrain.manual_seed(7)
    traced = jit.trace(model, x)  # the capture is the first call
    replayed = [traced.last_result.detach().numpy()] + [traced(x).detach().numpy() for _ in range(2)]
    for e, r in zip(eager, replayed):
        assert np.array_equal(e, r)
    assert not np.array_equal(replayed[1] == 0, replayed[2] == 0)  # new masks


def test_batchnorm_running_statistics_are_updated_by_every_replay():
    def make():
        distrain.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))

    batches = arrays((8, 3), (8, 3), (8, 3), seed=5)
    eager_model, graph_model = make(), make()
    for batch in batches:
        eager_model(batch)
    traced = jit.trace(graph_model, batches[0])
    for batch in batches[1:]:
        traced(batch)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert np.array_equal(getattr(eager_model[1], name).numpy(), getattr(graph_model[1], name).numpy()), name
    assert int(graph_model[1].num_batches_tracked.item()) == 3


@pytest.mark.parametrize("how, where", [
    ("if", "if (x.sum() > 0)"),
    ("item", ".item()"),
    ("numpy", ".numpy()"),
    ("print", "print"),
])
def test_data_dependent_python_is_refused_with_its_place(how, where):
    def function(x):
        if how == "if":
            if (x.sum() > 0):
                return x * 2
            return x
        if how == "item":
            return x * x.sum().item()
        if how == "numpy":
            return distrain.tensor(x.detach().numpy() * 2)
        print(f"{x.sum():.3f}")
        return x

    (x,) = arrays((3,))
    with pytest.raises(CaptureError) as caught:
        jit.trace(function, x)
    message = str(caught.value)
    assert "test_footguns.py" in message and where in message, message
    assert "static graph" in message


def test_a_shape_that_depends_on_values_is_refused():
    def function(x):
        return x[x > 0].sum()

    (x,) = arrays((6,))
    with pytest.raises(CaptureError, match="boolean-mask indexing") as caught:
        jit.trace(function, x)
    assert "test_footguns.py:" in str(caught.value) and "x[x > 0]" in str(caught.value)
    with pytest.raises(CaptureError, match="nonzero"):
        jit.trace(lambda x: distrain.nonzero(x > 0), x)


def test_a_module_that_changes_its_python_state_in_forward_is_refused():
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.linear(x)

    (x,) = arrays((3, 2))
    with pytest.raises(CaptureError, match=r"attribute `calls` changed \(0 -> 1\)"):
        jit.trace(Counting(), x)


def test_a_tensor_kept_from_the_capture_fails_loudly_when_used_later():
    kept = []

    def function(x):
        y = x * 2
        kept.append(y)
        return y + 1

    (x,) = arrays((3,))
    traced = jit.trace(function, x)
    assert np.array_equal(traced(x).detach().numpy(), (x * 2 + 1).numpy())
    with pytest.raises(CaptureError, match="used after it"):
        kept[0] + 1


def test_a_value_check_inside_an_op_runs_on_every_replay():
    model = nn.Linear(4, 3)
    loss_fn = nn.CrossEntropyLoss()
    step = jit.compile_step(model, loss_fn, distrain.optim.SGD(model.parameters(), lr=0.1))
    (x,) = arrays((5, 4))
    step(x, distrain.tensor([0, 1, 2, 1, 0]))
    with pytest.raises(distrain.errors.ShapeError, match=r"target class values must be in \[0, 3\).*\[0, 7\]"):
        step(x, distrain.tensor([0, 1, 7, 1, 0]))


def test_a_model_changed_after_capture_is_retraced_not_replayed_stale():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    (x,) = arrays((2, 3))
    traced = jit.trace(model, x)
    model.eval()  # dropout off: the training graph must not be replayed
    assert np.array_equal(traced(x).detach().numpy(), model(x).detach().numpy())
    model[0].weight = nn.Parameter(distrain.ones(3, 3))  # a new parameter object
    assert np.array_equal(traced(x).detach().numpy(), model(x).detach().numpy())
    with distrain.no_grad():
        model[0].weight.data = distrain.zeros(3, 3)  # a new array behind the same parameter
    assert np.array_equal(traced(x).detach().numpy(), model(x).detach().numpy())
    model[1] = nn.Identity()
    assert np.array_equal(traced(x).detach().numpy(), model(x).detach().numpy())
