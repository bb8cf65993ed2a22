"""Tensor.share_memory_() / is_shared() and Module.share_memory() within one process.

Before this change neither method existed (AttributeError): every test here failed.
"""
import copy
import gc
import os
import pickle

import numpy as np
import pytest

import distrain
from distrain.errors import DeviceError


def mapped_segments():
    with open("/proc/self/maps") as maps:
        return sum("memfd:distrain-shared" in line for line in maps)


def open_descriptors():
    return len(os.listdir("/proc/self/fd"))


def test_share_memory_moves_the_values_in_place(device):
    tensor = distrain.arange(6, dtype=distrain.float32, device=device).reshape(2, 3)
    if device != "cpu":
        with pytest.raises(DeviceError, match=r"share_memory_\(\) works on cpu tensors; this \(2, 3\) tensor is on cuda"):
            tensor.share_memory_()
        return
    assert not tensor.is_shared()
    assert tensor.share_memory_() is tensor
    assert tensor.is_shared() and tensor.tolist() == [[0, 1, 2], [3, 4, 5]]
    view = tensor[1]  # views taken afterwards are in the shared memory too
    assert view.is_shared()
    with distrain.no_grad():
        view[0] = 30
    assert tensor[1, 0].item() == 30
    assert tensor.share_memory_() is tensor  # twice: a no-op


def test_plain_pickle_and_deepcopy_still_copy_values():
    tensor = distrain.tensor([1.0, 2.0]).share_memory_()
    for copied in (pickle.loads(pickle.dumps(tensor)), copy.deepcopy(tensor)):
        assert copied.tolist() == [1.0, 2.0] and not copied.is_shared()


def test_module_share_memory_shares_parameters_in_one_buffer_and_buffers():
    model = distrain.nn.Sequential(distrain.nn.Linear(3, 4), distrain.nn.BatchNorm1d(4), distrain.nn.Linear(4, 2))
    before = [p.detach().numpy().copy() for p in model.parameters()]
    assert model.share_memory() is model
    parameters = list(model.parameters())
    assert all(p.is_shared() for p in parameters) and all(b.is_shared() for b in model.buffers())
    assert len({id(p._flat) for p in parameters}) == 1 and parameters[0]._flat.data.size == sum(
        p.numel() for p in parameters)
    for parameter, values in zip(parameters, before):
        np.testing.assert_array_equal(parameter.detach().numpy(), values)


@pytest.mark.parametrize("optimizer_first", [False, True])
def test_an_optimizer_updates_the_shared_memory_as_it_would_private_memory(optimizer_first):
    """Created after share_memory() (the Hogwild way) or before it: the steps are the unshared model's."""
    distrain.manual_seed(0)
    shared, private = distrain.nn.Linear(5, 3), distrain.nn.Linear(5, 3)
    private.load_state_dict(shared.state_dict())
    optimizers = []
    if optimizer_first:
        optimizers.append(distrain.optim.SGD(shared.parameters(), lr=0.1, momentum=0.9))
    shared.share_memory()
    if not optimizer_first:
        optimizers.append(distrain.optim.SGD(shared.parameters(), lr=0.1, momentum=0.9))
    optimizers.append(distrain.optim.SGD(private.parameters(), lr=0.1, momentum=0.9))
    inputs = distrain.randn(8, 5)
    for _ in range(3):
        for model, optimizer in zip((shared, private), optimizers):
            optimizer.zero_grad()
            model(inputs).pow(2).mean().backward()
            optimizer.step()
    for mine, theirs in zip(shared.parameters(), private.parameters()):
        assert mine.is_shared()
        np.testing.assert_allclose(mine.detach().numpy(), theirs.detach().numpy(), rtol=1e-6)
    assert not shared.weight.grad.is_shared()  # gradients stay private


def test_memory_is_unmapped_when_the_last_tensor_goes():
    gc.collect()
    segments, descriptors = mapped_segments(), open_descriptors()
    model = distrain.nn.Linear(4, 4).share_memory()
    tensor = distrain.zeros(1000).share_memory_()
    view = tensor[10:20]
    assert mapped_segments() == segments + 2 and open_descriptors() > descriptors
    del model, tensor
    gc.collect()
    assert mapped_segments() == segments + 1  # the view still holds the tensor's memory
    del view
    gc.collect()
    assert mapped_segments() == segments and open_descriptors() == descriptors


def test_a_module_on_the_gpu_is_refused_with_its_parameter_named(device):
    model = distrain.nn.Linear(2, 2).to(device)
    if device == "cpu":
        assert model.share_memory().weight.is_shared()
        return
    with pytest.raises(DeviceError, match=r"share_memory\(\) works on cpu modules; weight is on cuda"):
        model.share_memory()
