"""Traced and eager training are bit-identical on the CPU: every model of examples/ and the registry.

The oracle is distrain's own eager step (same op order, so the same rounding): the same
model and data, trained N steps eagerly and N steps through `compile_step`, must end with
the same parameters, buffers and losses, bit for bit. Small models run 1000 steps (a
graph that drifts, e.g. a frozen constant or a missed update, shows up long before); the
convolutional ones fewer, at small sizes, to stay within the suite's time.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

import distrain
from distrain import nn
from distrain.engine import jit
from distrain.models import registry

from .steps import training_step

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def example(name):
    """The module of examples/<name>.py, loaded once (an example may register a model name)."""
    module = sys.modules.get(f"example_{name}")
    if module is None:
        spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
        module = sys.modules[f"example_{name}"] = importlib.util.module_from_spec(spec)
        builders = dict(registry._BUILDERS)
        try:
            spec.loader.exec_module(module)
        finally:  # an example may register a model name: the registry's own tests expect the built-in names only
            registry._BUILDERS.clear()
            registry._BUILDERS.update(builders)
    return module


class MyReLUNet(nn.Module):
    """The two-layer net with examples/custom_function.py's autograd.Function as its ReLU."""

    def __init__(self, d_in, hidden, d_out):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)
        self.relu = example("custom_function").MyReLU

    def forward(self, x):
        return self.linear2(self.relu.apply(self.linear1(x)))


def regression_data(d_in, d_out, batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch * 4, d_in)).astype(np.float32)
    y = rng.standard_normal((batch * 4, d_out)).astype(np.float32)
    return [(distrain.tensor(x[i % 4 * batch:(i % 4 + 1) * batch]), distrain.tensor(y[i % 4 * batch:(i % 4 + 1) * batch]))
            for i in range(steps)]


def class_data(shape, classes, batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch * 4, *shape)).astype(np.float32)
    y = rng.integers(0, classes, batch * 4)
    return [(distrain.tensor(x[i % 4 * batch:(i % 4 + 1) * batch]), distrain.tensor(y[i % 4 * batch:(i % 4 + 1) * batch]))
            for i in range(steps)]


CASES = {
    # name: (model builder, loss, optimizer builder, data, steps)
    "two_layer_net_module (Adam)": (lambda: example("two_layer_net_module").TwoLayerNet(100, 20, 10),
                                    lambda: nn.MSELoss(reduction="sum"),
                                    lambda p: distrain.optim.Adam(p, lr=1e-3), lambda n: regression_data(100, 10, 8, n),
                                    1000),
    "two_layer_net_nn (SGD)": (lambda: nn.Sequential(nn.Linear(100, 20), nn.ReLU(), nn.Linear(20, 10)),
                               lambda: nn.MSELoss(reduction="sum"), lambda p: distrain.optim.SGD(p, lr=1e-4),
                               lambda n: regression_data(100, 10, 8, n), 1000),
    "custom_function MyReLU (SGD momentum)": (lambda: MyReLUNet(100, 20, 10), lambda: nn.MSELoss(),
                                              lambda p: distrain.optim.SGD(p, lr=1e-2, momentum=0.9),
                                              lambda n: regression_data(100, 10, 8, n), 1000),
    "custom_model_in_trainer TwoLayerNet (AdamW)": (
        lambda: example("custom_model_in_trainer").TwoLayerNet((1, 8, 8), 10, hidden=16), nn.CrossEntropyLoss,
        lambda p: distrain.optim.AdamW(p, lr=1e-2), lambda n: class_data((1, 8, 8), 10, 16, n), 1000),
    "registry mlp with dropout (SGD momentum)": (
        lambda: distrain.models.create("mlp", input_shape=(1, 8, 8), hidden=(32, 16), dropout=0.25),
        nn.CrossEntropyLoss, lambda p: distrain.optim.SGD(p, lr=0.05, momentum=0.9),
        lambda n: class_data((1, 8, 8), 10, 16, n), 1000),
    "transfer_learning SmallCNN (SGD)": (lambda: example("transfer_learning").SmallCNN(10), nn.CrossEntropyLoss,
                                         lambda p: distrain.optim.SGD(p, lr=0.05),
                                         lambda n: class_data((1, 8, 8), 10, 8, n), 200),
    "registry cnn with BatchNorm (Adam)": (lambda: distrain.models.create("cnn", input_shape=(3, 8, 8), width=8),
                                           nn.CrossEntropyLoss, lambda p: distrain.optim.Adam(p, lr=1e-3),
                                           lambda n: class_data((3, 8, 8), 10, 8, n), 100),
    "registry resnet18 (SGD momentum)": (
        lambda: distrain.models.create("resnet18", input_shape=(3, 8, 8), num_classes=4),
        nn.CrossEntropyLoss, lambda p: distrain.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=1e-4),
        lambda n: class_data((3, 8, 8), 4, 2, n), 6),
}


def train(case, compiled):
    build, loss, optimizer_for, data, steps = CASES[case]
    distrain.manual_seed(0)
    model = build()
    loss_fn = loss()
    optimizer = optimizer_for(model.parameters())
    batches = data(steps)
    distrain.manual_seed(1)  # the dropout masks: the same draws in both runs
    step = training_step(model, loss_fn, optimizer, compiled)
    losses = [step(x, y).numpy().copy() for x, y in batches]
    if compiled:
        assert step.traced.captures == 1  # one capture, then replays only
    return losses, model


@pytest.mark.parametrize("case", list(CASES))
def test_compile_step_trains_bit_identically_to_eager(case):
    eager_losses, eager_model = train(case, compiled=False)
    graph_losses, graph_model = train(case, compiled=True)
    assert np.array_equal(np.array(eager_losses), np.array(graph_losses)), case
    eager_state, graph_state = eager_model.state_dict(), graph_model.state_dict()
    for name, value in eager_state.items():
        assert np.array_equal(value.numpy(), graph_state[name].numpy()), f"{case}: {name}"
    assert not np.array_equal(eager_losses[0], eager_losses[-1])  # it trained


def test_forward_and_gradients_of_a_trace_equal_eager():
    def forward_backward(model, x):
        loss = model(x).square().mean()
        loss.backward()
        return loss

    distrain.manual_seed(0)
    model = distrain.models.create("cnn", input_shape=(3, 8, 8), width=4)
    x = distrain.randn(2, 3, 8, 8)
    eager_loss = forward_backward(model, x)
    eager_grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    traced = jit.trace(lambda x: forward_backward(model, x), x)
    model.zero_grad()
    model.train()
    loss = traced(x)
    assert np.array_equal(loss.detach().numpy(), eager_loss.detach().numpy())
    for grad, parameter in zip(eager_grads, model.parameters()):
        assert np.array_equal(parameter.grad.numpy(), grad)


def test_a_learning_rate_schedule_acts_on_the_compiled_step_as_on_eager():
    def run(compiled):
        distrain.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        optimizer = distrain.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        schedule = distrain.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)
        loss_fn = nn.CrossEntropyLoss()
        step = training_step(model, loss_fn, optimizer, compiled)
        losses = []
        for x, y in class_data((8,), 2, 4, 10):
            losses.append(step(x, y).item())
            schedule.step()
        return losses

    assert run(True) == run(False)
