"""Sequential, ModuleList and ModuleDict against torch.nn: construction, indexing, mutation, parameter visibility."""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn

from ..oracle import FLOAT_DTYPES
from .module_oracle import check_module_against_torch, twins


def _names(module):
    return [name for name, _ in module.named_parameters()]


def _layers(lib):
    return [lib.nn.Linear(4, 5), lib.nn.ReLU(), lib.nn.Linear(5, 3), lib.nn.Tanh()]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_sequential_forward_matches_torch(dtype, device):
    d, t = twins(nn.Sequential(*_layers(distrain)), torch.nn.Sequential(*_layers(torch)), dtype,
                 device)
    check_module_against_torch(d, t, [np.random.default_rng(0).standard_normal((6, 4))], dtype, device)


def test_sequential_from_ordered_dict_names_children_like_torch():
    def build(lib):
        return lib.nn.Sequential(OrderedDict([("fc1", lib.nn.Linear(4, 5)), ("act", lib.nn.ReLU()),
                                              ("fc2", lib.nn.Linear(5, 3))]))

    d, t = build(distrain), build(torch)
    assert _names(d) == _names(t) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert d.fc1 is d[0] and d.act is d[1] and d[-1] is d.fc2
    assert repr(d) == repr(t)


def test_sequential_indexing_slicing_len_iteration():
    layers = _layers(distrain)
    model = nn.Sequential(*layers)
    assert len(model) == 4
    assert model[0] is layers[0] and model[-1] is layers[3] and model[-4] is layers[0]
    assert list(model) == layers
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    assert [type(m).__name__ for m in model[::2]] == ["Linear", "Linear"]
    # slicing keeps torch's child names
    torch_model = torch.nn.Sequential(*_layers(torch))
    assert [n for n, _ in model[1:3].named_children()] == [n for n, _ in torch_model[1:3].named_children()]
    for bad in (4, -5):
        with pytest.raises(IndexError):
            model[bad]


def test_sequential_append_insert_extend_setitem_delitem_like_torch():
    def mutate(lib):
        model = lib.nn.Sequential(lib.nn.Linear(4, 5), lib.nn.ReLU())
        assert model.append(lib.nn.Linear(5, 3)) is model
        model.extend([lib.nn.Tanh(), lib.nn.Linear(3, 2)])
        model.insert(1, lib.nn.Identity())
        model[0] = lib.nn.Linear(4, 5, bias=False)
        del model[2]
        return model

    d, t = mutate(distrain), mutate(torch)
    assert [type(m).__name__ for m in d] == [type(m).__name__ for m in t]
    assert [n for n, _ in d.named_children()] == [n for n, _ in t.named_children()]
    assert _names(d) == _names(t)
    assert repr(d) == repr(t)


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError):
        nn.Sequential(nn.Linear(2, 2), nn.ReLU)


def test_module_list_parameters_are_visible_to_the_parent():
    def build(lib):
        class Tower(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = lib.nn.ModuleList([lib.nn.Linear(3, 3) for _ in range(3)])
                self.hidden = [lib.nn.Linear(3, 3)]  # a plain list: invisible

            def forward(self, x):
                for layer in self.layers:
                    x = layer(x)
                return x

        return Tower()

    d, t = build(distrain), build(torch)
    assert _names(d) == _names(t) == [f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    assert len(d.layers) == 3 and d.layers[-1] is list(d.layers)[2]
    d.layers.append(nn.Linear(3, 3))
    d.layers.extend([nn.Linear(3, 3)])
    d.layers += [nn.Linear(3, 3)]
    assert len(d.layers) == 6 and len(list(d.parameters())) == 12
    d.layers.insert(0, nn.Linear(3, 3, bias=False))
    assert [n for n, _ in d.layers.named_children()] == [str(i) for i in range(7)]
    assert d.layers[0].bias is None
    del d.layers[0]
    assert len(d.layers) == 6 and d.layers[0].bias is not None
    assert isinstance(d.layers[1:3], nn.ModuleList) and len(d.layers[1:3]) == 2
    d(distrain.randn(2, 3)).sum().backward()
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(NotImplementedError):
        d.layers(distrain.randn(2, 3))


def test_module_dict_parameters_are_visible_to_the_parent():
    def build(lib):
        class Heads(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.heads = lib.nn.ModuleDict({"b": lib.nn.Linear(3, 2), "a": lib.nn.Linear(3, 4)})

        return Heads()

    d, t = build(distrain), build(torch)
    assert _names(d) == _names(t) == ["heads.b.weight", "heads.b.bias", "heads.a.weight", "heads.a.bias"]
    heads = d.heads
    assert list(heads) == ["b", "a"] and list(heads.keys()) == ["b", "a"] and len(heads) == 2
    assert "a" in heads and "c" not in heads
    assert [k for k, _ in heads.items()] == ["b", "a"] and list(heads.values())[1] is heads["a"]
    heads["c"] = nn.Linear(3, 1)
    heads.update({"d": nn.ReLU()})
    assert list(heads) == ["b", "a", "c", "d"]
    assert "heads.c.weight" in _names(d)
    popped = heads.pop("b")
    assert isinstance(popped, nn.Linear) and "heads.b.weight" not in _names(d)
    del heads["a"]
    assert list(heads) == ["c", "d"]
    heads.clear()
    assert len(heads) == 0 and _names(d) == []
    with pytest.raises(NotImplementedError):
        nn.ModuleDict()(distrain.ones(1))


def test_containers_propagate_train_eval_and_to():
    model = nn.Sequential(nn.ModuleList([nn.Dropout()]), nn.ModuleDict({"bn": nn.BatchNorm1d(3)}))
    model.eval()
    assert not model[0][0].training and not model[1]["bn"].training
    model.to(distrain.float64)
    assert model[1]["bn"].weight.dtype == distrain.float64 and model[1]["bn"].running_var.dtype == distrain.float64


def test_sequential_setitem_replaces_in_place_and_keeps_the_forward_order():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Tanh())
    replacement = nn.Identity()
    model[0] = replacement
    assert model[0] is replacement
    assert [type(m).__name__ for m in model] == ["Identity", "ReLU", "Tanh"]
    assert [n for n, _ in model.named_children()] == ["0", "1", "2"]
    x = distrain.tensor([[-1.0, 2.0]])
    np.testing.assert_allclose(model(x).numpy(), np.tanh(np.maximum([[-1.0, 2.0]], 0)), rtol=1e-6)


def test_module_list_setitem_replaces_in_place():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.ReLU(), nn.Tanh()])
    layers[0] = nn.Identity()
    assert [type(m).__name__ for m in layers] == ["Identity", "ReLU", "Tanh"]
    layers[-1] = nn.Sigmoid()
    assert [type(m).__name__ for m in layers] == ["Identity", "ReLU", "Sigmoid"]
