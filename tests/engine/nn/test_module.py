"""Module mechanics against torch.nn.Module: registration, traversal order, modes, freezing, zero_grad,
to(), state_dict/load_state_dict, hooks, repr, deepcopy and the errors."""
import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn

from ..oracle import assert_close, to_distrain, to_numpy, to_torch
from .module_oracle import assert_same_state, twins


def build_net(lib):
    """One model built with either library, exercising every kind of registration."""

    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.nn.Sequential(lib.nn.Conv2d(2, 3, 3, padding=1), lib.nn.BatchNorm2d(3), lib.nn.ReLU())
            self.pool = lib.nn.AdaptiveAvgPool2d(1)
            self.head = lib.nn.Linear(3, 4)
            self.blocks = lib.nn.ModuleList([lib.nn.Linear(4, 4), lib.nn.Linear(4, 4, bias=False)])
            self.by_name = lib.nn.ModuleDict({"norm": lib.nn.LayerNorm(4), "out": lib.nn.Linear(4, 2)})
            self.scale = lib.nn.Parameter(lib.ones(1))
            self.register_buffer("step", lib.zeros(1))
            self.register_buffer("cache", lib.zeros(2), persistent=False)
            self.register_parameter("unused_bias", None)
            self.plain_list = [lib.nn.Linear(2, 2)]  # a plain list hides its modules, in both libraries

        def forward(self, x):
            x = self.pool(self.features(x)).flatten(1)
            x = self.head(x)
            for block in self.blocks:
                x = block(x).relu()
            return self.by_name["out"](self.by_name["norm"](x)) * self.scale

    return Net()


def _names(pairs):
    return [name for name, _ in pairs]


def test_registration_and_traversal_order_match_torch():
    d, t = build_net(distrain), build_net(torch)
    assert _names(d.named_parameters()) == _names(t.named_parameters())
    assert _names(d.named_buffers()) == _names(t.named_buffers()) == ["step", "cache", "features.1.running_mean",
                                                                      "features.1.running_var",
                                                                      "features.1.num_batches_tracked"]
    assert _names(d.named_modules()) == _names(t.named_modules())
    assert _names(d.named_children()) == _names(t.named_children())
    assert list(d.state_dict()) == list(t.state_dict())
    assert "cache" not in d.state_dict()  # non-persistent buffer
    assert [tuple(p.shape) for p in d.parameters()] == [tuple(p.shape) for p in t.parameters()]
    assert len(list(d.children())) == len(list(t.children())) == 5
    assert len(list(d.modules())) == len(list(t.modules()))


def test_attribute_access_reaches_the_registries():
    d = build_net(distrain)
    assert isinstance(d.scale, nn.Parameter) and d.unused_bias is None
    assert isinstance(d.step, distrain.Tensor) and not isinstance(d.step, nn.Parameter)
    assert d.head is d.get_submodule("head") and d.features[1].running_mean is d.get_submodule(
        "features.1").running_mean
    assert d.get_parameter("blocks.0.weight") is d.blocks[0].weight
    assert "head" in dir(d) and "scale" in dir(d)
    with pytest.raises(AttributeError):
        d.not_there
    del d.head
    assert "head.weight" not in dict(d.named_parameters())


def test_reassigning_replaces_the_registration():
    d = build_net(distrain)
    d.head = nn.Linear(3, 4, bias=False)
    assert "head.bias" not in dict(d.named_parameters())
    d.head = None  # torch allows None for a registered child
    assert "head.weight" not in dict(d.named_parameters())
    d.scale = None
    assert "scale" not in dict(d.named_parameters())
    d.step = distrain.ones(1)
    assert d.state_dict()["step"].item() == 1.0


def test_reassigning_a_parameter_keeps_its_place_like_torch():
    # torch writes into the existing dict slot, so parameters() (and an optimizer's param order) is unchanged
    def reassigned(lib):
        layer = lib.nn.Linear(3, 2)
        layer.weight = lib.nn.Parameter(lib.ones(2, 3))
        return layer

    assert _names(reassigned(distrain).named_parameters()) == _names(reassigned(torch).named_parameters()) == \
        ["weight", "bias"]


def test_shared_parameters_are_listed_once_like_torch():
    def tied(lib):
        model = lib.nn.Sequential(lib.nn.Linear(3, 3), lib.nn.ReLU(), lib.nn.Linear(3, 3))
        model[2].bias = model[0].bias  # the last registered name: re-assignment order is tested separately
        shared = lib.nn.Linear(3, 3)
        return lib.nn.Sequential(model, shared, shared)

    d, t = tied(distrain), tied(torch)
    assert _names(d.named_parameters()) == _names(t.named_parameters())
    assert _names(d.named_modules()) == _names(t.named_modules())
    assert _names(d.named_parameters(remove_duplicate=False)) == _names(t.named_parameters(remove_duplicate=False))
    assert len(list(d.parameters())) == len(list(t.parameters())) == 5
    assert list(d.state_dict()) == list(t.state_dict())


def test_train_and_eval_propagate_like_torch():
    d, t = build_net(distrain), build_net(torch)
    assert d.eval() is d
    t.eval()
    assert [m.training for m in d.modules()] == [m.training for m in t.modules()] == [False] * len(list(t.modules()))
    d.features.train()
    t.features.train()
    assert [m.training for m in d.modules()] == [m.training for m in t.modules()]
    assert d.train() is d and all(m.training for m in d.modules())
    d.train(False)
    assert not any(m.training for m in d.modules())
    with pytest.raises(ValueError):
        d.train("no")


def test_requires_grad_false_freezes_parameters(device):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(device)
    assert model[0].requires_grad_(False) is model[0]
    x = to_distrain(np.ones((2, 3), np.float32), device, requires_grad=True)
    model(x).sum().backward()
    assert model[0].weight.grad is None and model[0].bias.grad is None
    assert not model[0].weight.requires_grad
    assert model[2].weight.grad is not None and x.grad is not None
    model.requires_grad_(False)
    out = model(to_distrain(np.ones((2, 3), np.float32), device))
    assert not out.requires_grad
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())


def test_zero_grad_to_none_and_to_zero(device):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).to(device)
    model(to_distrain(np.ones((2, 3), np.float32), device)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    model.zero_grad(set_to_none=False)
    for p in model.parameters():
        assert p.grad is not None and not np.any(to_numpy(p.grad))
    # the next backward accumulates into zero: the same values as a fresh backward
    model(to_distrain(np.ones((2, 3), np.float32), device)).sum().backward()
    after_zero = [to_numpy(p.grad).copy() for p in model.parameters()]
    model.zero_grad()  # default set_to_none=True, as in torch 2.x
    assert all(p.grad is None for p in model.parameters())
    model(to_distrain(np.ones((2, 3), np.float32), device)).sum().backward()
    for fresh, p in zip(after_zero, model.parameters()):
        np.testing.assert_array_equal(to_numpy(p.grad), fresh)


def test_to_float64_keeps_parameter_identity(device):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    params = list(model.parameters())
    model(distrain.randn(5, 3)).sum().backward()
    assert model.to(device, distrain.float64) is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.dtype == distrain.float64 for p in params)
    assert all(p.grad.dtype == distrain.float64 for p in params)
    assert model[1].running_mean.dtype == distrain.float64
    assert model[1].num_batches_tracked.dtype == distrain.int64  # integer buffers keep their dtype
    out = model(to_distrain(np.ones((5, 3)), device))
    assert out.dtype == distrain.float64
    assert model.float() is model and all(p.dtype == distrain.float32 for p in params)
    assert model.double() is model and all(p.dtype == distrain.float64 for p in params)


def test_state_dict_round_trip_copies_in_place(device):
    source, target = build_net(distrain).to(device), build_net(distrain).to(device)
    source(distrain.randn(2, 2, 4, 4))  # moves BatchNorm's running statistics away from their defaults
    before = {name: p for name, p in target.named_parameters()}
    arrays_before = {name: p._data for name, p in target.named_parameters()}
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, p in target.named_parameters():
        assert p is before[name] and p._data is arrays_before[name], name  # same objects, written in place
    for (name, mine), (_, theirs) in zip(target.state_dict().items(), source.state_dict().items()):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs), err_msg=name)
    assert int(target.features[1].num_batches_tracked.item()) == 1
    # the copy is independent of the source
    with distrain.no_grad():
        source.head.weight.fill_(3.0)
    assert not np.any(to_numpy(target.head.weight) == 3.0)


def test_load_state_dict_casts_to_the_model_dtype_like_torch():
    model = nn.Linear(2, 2).to(distrain.float64)
    model.load_state_dict({"weight": distrain.full((2, 2), 0.1), "bias": distrain.zeros(2)})  # float32 values
    assert model.weight.dtype == distrain.float64
    np.testing.assert_array_equal(to_numpy(model.weight), np.full((2, 2), np.float32(0.1), dtype=np.float64))


def test_state_dict_shares_storage_and_is_detached_like_torch():
    layer = nn.Linear(3, 2)
    state = layer.state_dict()
    assert not state["weight"].requires_grad and not isinstance(state["weight"], nn.Parameter)
    state["weight"].fill_(1.5)  # torch: the state_dict tensors alias the parameters
    np.testing.assert_array_equal(to_numpy(layer.weight), np.full((2, 3), 1.5, dtype=np.float32))
    kept = layer.state_dict(keep_vars=True)
    assert kept["weight"] is layer.weight


def test_load_state_dict_from_torch_and_back():
    d, t = twins(build_net(distrain), build_net(torch), np.float32)
    back = build_net(torch)
    back.load_state_dict({k: torch.from_numpy(to_numpy(v).copy()) for k, v in d.state_dict().items()})
    for (name, mine), (_, theirs) in zip(back.state_dict().items(), t.state_dict().items()):
        assert torch.equal(mine, theirs), name
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    d.eval()
    t.eval()
    assert_close(d(to_distrain(x)), t(to_torch(x)), atol=1e-5)


def test_load_state_dict_strict_false_returns_missing_and_unexpected_keys():
    d = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    state = {"0.weight": np.ones((4, 3), dtype=np.float32), "0.bias": np.ones(4, dtype=np.float32),
             "2.weight": np.ones((2, 4), dtype=np.float32), "extra": np.ones(1, dtype=np.float32)}
    result = d.load_state_dict({k: distrain.tensor(v) for k, v in state.items()}, strict=False)
    expected = t.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
    assert result.missing_keys == expected.missing_keys == ["1.weight", "1.bias"]
    assert result.unexpected_keys == expected.unexpected_keys == ["2.weight", "extra"]
    missing, unexpected = result  # a namedtuple, as in torch
    assert missing == ["1.weight", "1.bias"]
    np.testing.assert_array_equal(to_numpy(d[0].weight), np.ones((4, 3)))


def _bad_state():
    return {"0.weight": distrain.ones(4, 3), "0.bias": distrain.ones(5), "surprise.weight": distrain.ones(1)}


def test_load_state_dict_strict_error_lists_missing_unexpected_and_mismatched():
    d = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    before = [to_numpy(p).copy() for p in d.parameters()]
    with pytest.raises(distrain.DistrainError) as info:
        d.load_state_dict(_bad_state())
    message = str(info.value)
    for expected in ("1.weight", "1.bias", "surprise.weight", "0.bias", "(5,)", "(4,)"):
        assert expected in message, f"{expected!r} not in {message!r}"
    # nothing was loaded, not even the keys that matched
    for old, p in zip(before, d.parameters()):
        np.testing.assert_array_equal(to_numpy(p), old)


def test_load_state_dict_shape_mismatch_is_an_error_even_when_not_strict():
    d = nn.Linear(3, 4)
    with pytest.raises(distrain.DistrainError) as info:
        d.load_state_dict({"weight": distrain.ones(4, 2)}, strict=False)
    assert "(4, 2)" in str(info.value) and "(4, 3)" in str(info.value)
    with pytest.raises(RuntimeError):
        torch.nn.Linear(3, 4).load_state_dict({"weight": torch.ones(4, 2)}, strict=False)


def test_load_state_dict_error_is_a_runtime_error_like_torch():
    # distrain/errors.py: "except RuntimeError keep[s] working for code ported from PyTorch";
    # torch raises RuntimeError from load_state_dict
    with pytest.raises(RuntimeError):
        torch.nn.Sequential(torch.nn.Linear(3, 4)).load_state_dict({"0.weight": torch.ones(4, 3)})
    with pytest.raises(RuntimeError):
        nn.Sequential(nn.Linear(3, 4)).load_state_dict({"0.weight": distrain.ones(4, 3)})


# --- hooks ---------------------------------------------------------------------------------------

def test_forward_pre_and_post_hooks_and_remove(device):
    layer = nn.Linear(3, 2).to(device)
    calls = []

    def pre(module, args):
        calls.append(("pre", module))
        return args[0] * 2  # a non-tuple replacement is wrapped into the args tuple

    def post(module, args, output):
        calls.append(("post", tuple(args[0].shape)))
        return output + 1

    def observer(module, args, output):
        calls.append("observer")  # returns None: output unchanged

    x = to_distrain(np.ones((4, 3), np.float32), device)
    plain = to_numpy(layer(x))
    handles = [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post),
               layer.register_forward_hook(observer)]
    hooked = to_numpy(layer(x))
    assert calls == [("pre", layer), ("post", (4, 3)), "observer"]
    expected = to_numpy(nn.functional.linear(x * 2, layer.weight, layer.bias)) + 1
    np.testing.assert_allclose(hooked, expected, rtol=1e-6)
    for handle in handles:
        handle.remove()
    calls.clear()
    np.testing.assert_array_equal(to_numpy(layer(x)), plain)
    assert calls == []
    handles[0].remove()  # removing twice is harmless, as in torch


def test_hooks_on_a_submodule_see_its_input_like_torch():
    def run(lib):
        model = lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.ReLU(), lib.nn.Linear(4, 2))
        seen = []
        model[2].register_forward_hook(lambda m, args, out: seen.append((tuple(args[0].shape), tuple(out.shape))))
        model[1].register_forward_pre_hook(lambda m, args: (args[0] * 0,))
        out = model(lib.ones(5, 3))
        # the pre-hook zeroed ReLU's input, so every row of the output is the last layer's bias
        np.testing.assert_allclose(to_numpy(out), np.broadcast_to(to_numpy(model[2].bias), (5, 2)), rtol=1e-6)
        return seen

    assert run(distrain) == run(torch) == [((5, 4), (5, 2))]


# --- repr -----------------------------------------------------------------------------------------

def _repr_model(lib):
    return lib.nn.Sequential(
        lib.nn.Conv2d(3, 8, 3, padding=1),
        lib.nn.BatchNorm2d(8),
        lib.nn.ReLU(),
        lib.nn.MaxPool2d(2),
        lib.nn.Conv2d(8, 16, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=8, bias=False),
        lib.nn.BatchNorm2d(16, momentum=None, affine=False),
        lib.nn.ReLU(inplace=True),
        lib.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        lib.nn.Flatten(),
        lib.nn.Linear(16, 10),
        lib.nn.ReLU(),
        lib.nn.Linear(10, 2, bias=False),
    )


def test_repr_of_a_sequential_matches_torch():
    assert str(_repr_model(distrain)) == str(_repr_model(torch))
    assert repr(_repr_model(distrain)) == repr(_repr_model(torch))


REPR_CASES = {
    "Linear": lambda lib: lib.nn.Linear(3, 4),
    "Conv2d": lambda lib: lib.nn.Conv2d(3, 8, 3),
    "Conv2d_same": lambda lib: lib.nn.Conv2d(3, 8, 3, padding="same"),
    "Conv2d_valid": lambda lib: lib.nn.Conv2d(3, 8, 3, padding="valid"),
    "BatchNorm1d": lambda lib: lib.nn.BatchNorm1d(4),
    "BatchNorm2d_options": lambda lib: lib.nn.BatchNorm2d(4, eps=1e-3, momentum=0.2, track_running_stats=False),
    "MaxPool2d": lambda lib: lib.nn.MaxPool2d(2),
    "MaxPool2d_pairs": lambda lib: lib.nn.MaxPool2d((2, 3), stride=(1, 2), dilation=2),
    "AvgPool2d": lambda lib: lib.nn.AvgPool2d(2),
    "AvgPool2d_options": lambda lib: lib.nn.AvgPool2d(3, stride=2, padding=1),
    "AdaptiveAvgPool2d": lambda lib: lib.nn.AdaptiveAvgPool2d(1),
    "AdaptiveAvgPool2d_pair": lambda lib: lib.nn.AdaptiveAvgPool2d((2, 3)),
    "LayerNorm": lambda lib: lib.nn.LayerNorm(5),
    "LayerNorm_no_affine": lambda lib: lib.nn.LayerNorm((3, 4), elementwise_affine=False),
    "Embedding": lambda lib: lib.nn.Embedding(10, 3),
    "Dropout": lambda lib: lib.nn.Dropout(),
    "GELU_tanh": lambda lib: lib.nn.GELU(approximate="tanh"),
    "LeakyReLU": lambda lib: lib.nn.LeakyReLU(0.2),
    "Softmax": lambda lib: lib.nn.Softmax(dim=1),
    "Identity": lambda lib: lib.nn.Identity(),
    "Flatten": lambda lib: lib.nn.Flatten(),
    "ModuleList": lambda lib: lib.nn.ModuleList([lib.nn.Linear(2, 2), lib.nn.ReLU()]),
    "ModuleDict": lambda lib: lib.nn.ModuleDict({"a": lib.nn.Linear(2, 2)}),
    "Sequential_empty": lambda lib: lib.nn.Sequential(),
    "Sequential_nested": lambda lib: lib.nn.Sequential(OrderedDict([("inner", lib.nn.Sequential(lib.nn.Linear(2, 2))),
                                                                    ("act", lib.nn.Tanh())])),
    "Embedding_max_norm": lambda lib: lib.nn.Embedding(10, 3, max_norm=1.0),
}


@pytest.mark.parametrize("name", list(REPR_CASES))
def test_layer_repr_matches_torch(name):
    make = REPR_CASES[name]
    assert repr(make(distrain)) == repr(make(torch))


# --- deepcopy and errors ----------------------------------------------------------------------------

def test_deepcopy_of_a_model(device):
    model = build_net(distrain).to(device)
    model.blocks[1].weight = model.blocks[0].weight  # a tied weight must stay tied in the copy
    model(distrain.randn(2, 2, 4, 4)).sum().backward()
    clone = copy.deepcopy(model)
    assert clone.blocks[1].weight is clone.blocks[0].weight
    for (name, p), (_, q) in zip(model.named_parameters(), clone.named_parameters()):
        assert p is not q and isinstance(q, nn.Parameter) and q.requires_grad, name
        np.testing.assert_array_equal(to_numpy(p), to_numpy(q), err_msg=name)
        assert q.grad is not None
        np.testing.assert_array_equal(to_numpy(p.grad), to_numpy(q.grad), err_msg=name)
    for (name, b), (_, c) in zip(model.named_buffers(), clone.named_buffers()):
        assert b is not c
        np.testing.assert_array_equal(to_numpy(b), to_numpy(c), err_msg=name)
    x = to_distrain(np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32), device)
    model.eval()
    clone.eval()
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(clone(x)))
    with distrain.no_grad():
        clone.head.weight.fill_(0.0)
    assert np.any(to_numpy(model.head.weight) != 0)
    clone.zero_grad()
    assert model.head.weight.grad is not None


def test_assigning_a_plain_tensor_to_a_parameter_attribute_is_an_error():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError) as info:
        layer.weight = distrain.randn(2, 3)
    assert "weight" in str(info.value)
    with pytest.raises(TypeError):
        torch.nn.Linear(3, 2).weight = torch.randn(2, 3)
    with pytest.raises(TypeError):
        layer.register_parameter("other", distrain.randn(2))
    layer.weight = nn.Parameter(distrain.randn(2, 3))  # a Parameter is fine


def test_assigning_a_non_module_to_a_child_attribute_is_an_error():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(TypeError):
        model.add_module("x", "not a module")


def test_calling_a_module_without_forward_raises_not_implemented():
    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError):
        NoForward()(distrain.ones(2))
    with pytest.raises(NotImplementedError):
        nn.Module()(distrain.ones(2))


def test_registering_before_init_is_an_error():
    class Early(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(distrain.ones(2))
            super().__init__()

    with pytest.raises(AttributeError):
        Early()


def test_register_buffer_persistence_and_name_checks():
    module = nn.Module()
    module.register_buffer("kept", distrain.ones(2))
    module.register_buffer("scratch", distrain.zeros(2), persistent=False)
    assert list(module.state_dict()) == ["kept"]
    assert _names(module.named_buffers()) == ["kept", "scratch"]
    with pytest.raises(KeyError):
        module.register_buffer("a.b", distrain.ones(1))
    with pytest.raises(TypeError):
        module.register_buffer("not_tensor", [1, 2])
    # a non-persistent buffer is not expected by load_state_dict either
    assert module.load_state_dict({"kept": distrain.full((2,), 3.0)}) == ([], [])
    np.testing.assert_array_equal(to_numpy(module.kept), [3.0, 3.0])


def test_apply_visits_children_first_then_self_like_torch():
    def visit(lib):
        order = []
        model = lib.nn.Sequential(lib.nn.Linear(2, 2), lib.nn.Sequential(lib.nn.ReLU(), lib.nn.Tanh()))
        model.apply(lambda m: order.append(type(m).__name__))
        return order

    assert visit(distrain) == visit(torch)


def test_batch_norm_state_after_load_matches_torch_training(device):
    d, t = twins(nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3), np.float64, device)
    for step in range(2):
        x = np.random.default_rng(step).standard_normal((2, 3, 2, 2))
        d(to_distrain(x, device))
        t(to_torch(x))
    assert_same_state(d, t)
