"""mlp and cnn against torch twins built from the architecture their docstrings promise.

Each twin holds random weights (and, for the CNN, random BatchNorm statistics); distrain's
model loads its state_dict as arrays (so the names and shapes must be the twin's) and must
compute the same outputs, input gradient and parameter gradients, in eval and train mode.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

import distrain
import distrain.models

from ..engine.nn.module_oracle import check_module_against_torch
from .torchvision_twin import randomise_batch_norms


def load_twin(model, twin):
    """Load the twin's state_dict into `model` as float64 arrays (strict), both in float64."""
    twin = twin.double()
    model = model.double()
    model.load_state_dict({key: value.numpy() for key, value in twin.state_dict().items()})
    return model, twin


def twin_mlp(in_features, hidden, num_classes, dropout):
    layers = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


@pytest.mark.parametrize("hidden", [(256, 256), (32,), ()])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_mlp_computes_what_its_torch_twin_computes(hidden, mode):
    model, twin = load_twin(distrain.models.create("mlp", input_shape=(1, 8, 8), hidden=hidden, num_classes=10),
                            twin_mlp(64, hidden, 10, 0.0))
    getattr(model, mode)(), getattr(twin, mode)()
    check_module_against_torch(model, twin, [np.random.default_rng(0).standard_normal((5, 1, 8, 8))])


def test_mlp_dropout_drops_in_training_only():
    model = distrain.models.create("mlp", in_features=20, hidden=(4000,), num_classes=3, dropout=0.25)
    dropouts = [module for module in model.modules() if isinstance(module, distrain.nn.Dropout)]
    assert [d.p for d in dropouts] == [0.25]
    model, twin = load_twin(model, twin_mlp(20, (4000,), 3, 0.25))
    model.eval(), twin.eval()
    check_module_against_torch(model, twin, [np.random.default_rng(1).standard_normal((3, 20))])
    model.train()
    hidden = model[:3](distrain.ones(1, 20, dtype=distrain.float64)).detach().numpy()  # Flatten, Linear, ReLU
    dropped = model[:4](distrain.ones(1, 20, dtype=distrain.float64)).detach().numpy()
    live = hidden > 0
    zeroed = float((dropped[live] == 0).mean())
    assert 0.2 < zeroed < 0.3  # about a quarter of 4000 units
    kept = dropped[live] != 0
    np.testing.assert_allclose(dropped[live][kept], hidden[live][kept] / 0.75)


def test_mlp_names_do_not_depend_on_the_dropout_rate():
    """A checkpoint trained with dropout loads into the same model without it."""
    with_dropout = distrain.models.create("mlp", in_features=10, hidden=(8, 8), dropout=0.5)
    without = distrain.models.create("mlp", in_features=10, hidden=(8, 8))
    without.load_state_dict(with_dropout.state_dict())
    assert list(without.state_dict()) == ["1.weight", "1.bias", "4.weight", "4.bias", "7.weight", "7.bias"]


class TwinCNN(nn.Module):
    """The cnn's promised layout, its block plan written out: (in, out, stride) per Conv-BN-ReLU block."""

    def __init__(self, plan, num_classes):
        super().__init__()
        self.features = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                          nn.ReLU())
            for c_in, c_out, stride in plan])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(plan[-1][1], num_classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))


CNN_CASES = {  # input shape -> the blocks it gets: halve until the map is at most 4x4
    (1, 8, 8): [(1, 32, 1), (32, 64, 2)],
    (3, 32, 32): [(3, 32, 1), (32, 64, 2), (64, 128, 2), (128, 256, 2)],
    (1, 28, 28): [(1, 32, 1), (32, 64, 2), (64, 128, 2), (128, 256, 2)],  # 28 -> 14 -> 7 -> 4
}


@pytest.mark.parametrize("input_shape", list(CNN_CASES))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_cnn_computes_what_its_torch_twin_computes(input_shape, mode):
    twin = randomise_batch_norms(TwinCNN(CNN_CASES[input_shape], 10), torch.Generator().manual_seed(4))
    model, twin = load_twin(distrain.models.create("cnn", input_shape=input_shape, num_classes=10), twin)
    getattr(model, mode)(), getattr(twin, mode)()
    check_module_against_torch(model, twin, [np.random.default_rng(5).standard_normal((4,) + input_shape)],
                               np.float64, rtol=1e-6, atol=1e-9)


def test_cnn_spellings_of_the_input_agree():
    """in_channels + input_size describe the same network as input_shape; the width scales every block."""
    by_parts = distrain.models.create("cnn", in_channels=1, input_size=8, width=8)
    by_shape = distrain.models.create("cnn", input_shape=(1, 8, 8), width=8)
    shapes = [(key, tuple(value.shape)) for key, value in by_parts.state_dict().items()]
    assert shapes == [(key, tuple(value.shape)) for key, value in by_shape.state_dict().items()]
    assert dict(shapes)["features.1.0.weight"] == (16, 8, 3, 3) and dict(shapes)["classifier.weight"] == (10, 16)
    assert distrain.models.create("cnn").features[0][0].weight.shape == (32, 3, 3, 3)  # default: CIFAR-shaped


def test_cnn_initialisation_is_pytorchs_default():
    """Conv and Linear: U(+-1/sqrt(fan_in)) (PyTorch's kaiming_uniform with a=sqrt(5)); BatchNorm 1 and 0."""
    model = distrain.models.create("cnn", input_shape=(3, 32, 32))
    for name, parameter in model.named_parameters():
        values = parameter.detach().numpy()
        if name.endswith(".1.weight"):
            assert (values == 1).all(), name
        elif name.endswith(".1.bias"):
            assert (values == 0).all(), name
        elif values.ndim > 1:
            bound = 1 / math.sqrt(values[0].size)
            assert np.abs(values).max() <= bound, name
            assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 0.1, name
