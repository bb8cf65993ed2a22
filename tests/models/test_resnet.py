"""distrain's resnet18/34 against a torch twin of torchvision's (tests/models/torchvision_twin.py).

The promise: a torchvision state_dict, its tensors turned into arrays with .numpy(), loads
strictly into distrain's model, which then computes what torchvision computes: outputs in
eval mode (running statistics) and in train mode (batch statistics, and the running
statistics it updates), and the gradient of a loss w.r.t. the input and every parameter,
for both stems and both depths. And a fresh model is initialised as torchvision's is.
"""
import math

import numpy as np
import pytest
import torch

import distrain
import distrain.models

from ..engine.nn.module_oracle import check_module_against_torch
from .torchvision_twin import TORCHVISION_PARAMETER_COUNTS, TwinResNet, randomise_batch_norms

ARCHS = ["resnet18", "resnet34"]
STEMS = {"cifar": 16, "imagenet": 64}  # stem -> the image size its tests run on: small, for speed (layer4 sees 2x2)


def arrays(torch_model):
    return {key: value.numpy() for key, value in torch_model.state_dict().items()}


def shapes(state):
    return [(key, tuple(value.shape)) for key, value in state.items()]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("stem", list(STEMS))
def test_state_dict_keys_and_shapes_are_torchvisions(arch, stem):
    twin = TwinResNet(arch, stem=stem)
    model = distrain.models.create(arch, stem=stem)
    assert shapes(model.state_dict()) == shapes(twin.state_dict())
    model.load_state_dict(arrays(twin))  # strict
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key].numpy(), value.numpy(), err_msg=key)


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_and_landmark_names_are_torchvisions(arch):
    """Checks of the twin itself, independent of it: torchvision's published sizes and a few of its keys."""
    twin_count = sum(p.numel() for p in TwinResNet(arch).parameters())
    model = distrain.models.create(arch)
    assert twin_count == sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMETER_COUNTS[arch]
    state = dict(shapes(model.state_dict()))
    assert state["conv1.weight"] == (64, 3, 7, 7)
    assert state["layer1.0.bn1.running_var"] == (64,) and state["layer1.0.bn1.num_batches_tracked"] == ()
    assert state["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert state["layer4.0.downsample.1.running_mean"] == (512,)
    assert state["fc.weight"] == (1000, 512) and state["fc.bias"] == (1000,)
    assert not any(key.startswith("layer1.0.downsample") for key in state)  # layer1 keeps 64 channels, stride 1
    assert distrain.models.create(arch, stem="cifar").conv1.weight.shape == (64, 3, 3, 3)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("stem", list(STEMS))
def test_outputs_and_gradients_equal_torchvisions(arch, stem, mode):
    twin = randomise_batch_norms(TwinResNet(arch, num_classes=10, stem=stem), torch.Generator().manual_seed(1))
    twin = twin.double()
    model = distrain.models.create(arch, num_classes=10, stem=stem).double()
    model.load_state_dict(arrays(twin))
    getattr(model, mode)()
    getattr(twin, mode)()
    image = np.random.default_rng(2).standard_normal((2, 3, STEMS[stem], STEMS[stem]))
    # a random upstream gradient on the logits: the gradient of a random linear loss; every
    # parameter's .grad, the input's, and (train mode) the updated running statistics are compared
    check_module_against_torch(model, twin, [image], np.float64, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("stem", list(STEMS))
def test_a_distrain_state_dict_loads_into_torchvision(stem):
    model = distrain.models.create("resnet18", num_classes=10, stem=stem)
    twin = TwinResNet("resnet18", num_classes=10, stem=stem)
    twin.load_state_dict({key: torch.from_numpy(value.numpy().copy()) for key, value in model.state_dict().items()})
    image = np.random.default_rng(3).standard_normal((2, 3, STEMS[stem], STEMS[stem])).astype(np.float32)
    model.eval(), twin.eval()
    with torch.no_grad():
        expected = twin(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(model(distrain.tensor(image)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def kurtosis(values):
    centred = values - values.mean()
    return float((centred ** 4).mean() / (centred ** 2).mean() ** 2)


@pytest.mark.parametrize("stem", list(STEMS))
def test_initialisation_is_torchvisions(stem):
    """Convolutions: normal (kurtosis 3, not a uniform's 1.8) with std sqrt(2 / fan_out);
    BatchNorm: weight 1, bias 0, fresh statistics; fc: PyTorch's Linear default U(+-1/sqrt(512))."""
    model = distrain.models.create("resnet18", stem=stem)
    convs = [(name, p.detach().numpy()) for name, p in model.named_parameters() if p.ndim == 4]
    assert len(convs) == 20  # conv1 + 16 block convs + 3 downsample projections
    for name, weight in convs:
        out_channels, _, height, width = weight.shape
        expected_std = math.sqrt(2.0 / (out_channels * height * width))
        assert abs(weight.std() / expected_std - 1) < 0.06, name
        assert abs(weight.mean()) < 0.06 * expected_std, name
        if weight.size > 20_000:
            assert 2.8 < kurtosis(weight) < 3.2, name
    for name, module in model.named_modules():
        if isinstance(module, distrain.nn.BatchNorm2d):
            assert (module.weight.detach().numpy() == 1).all() and (module.bias.detach().numpy() == 0).all(), name
            assert (module.running_mean.numpy() == 0).all() and (module.running_var.numpy() == 1).all(), name
            assert module.num_batches_tracked.item() == 0, name
    bound = 1 / math.sqrt(512)
    fc_weight, fc_bias = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    assert np.abs(fc_weight).max() <= bound and np.abs(fc_bias).max() <= bound
    assert abs(fc_weight.std() / (bound / math.sqrt(3)) - 1) < 0.02


def test_zero_init_residual_zeroes_only_each_blocks_last_batch_norm():
    model = distrain.models.create("resnet34", zero_init_residual=True)
    blocks = [module for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for module in stage]
    assert len(blocks) == 16
    for block in blocks:
        assert (block.bn2.weight.detach().numpy() == 0).all()
        assert (block.bn1.weight.detach().numpy() == 1).all()
        if block.downsample is not None:
            assert (block.downsample[1].weight.detach().numpy() == 1).all()
    assert (model.bn1.weight.detach().numpy() == 1).all()
    # every block now starts as identity + shortcut: the default starts otherwise
    assert not (distrain.models.create("resnet34").layer1[0].bn2.weight.detach().numpy() == 0).any()


def test_in_channels_and_input_shape_set_the_first_convolution():
    assert distrain.models.create("resnet18", in_channels=1).conv1.weight.shape == (64, 1, 7, 7)
    assert distrain.models.create("resnet18", input_shape=(4, 32, 32), stem="cifar").conv1.weight.shape == (64, 4, 3, 3)
    model = distrain.models.create("resnet18", in_channels=1, num_classes=7, stem="cifar")
    assert model(distrain.randn(2, 1, 16, 16)).shape == (2, 7)
