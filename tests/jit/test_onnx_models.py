"""export_onnx on whole models: each is checked by onnx, run by ONNX Runtime on the example batch and on
another batch size through the dynamic batch axis, and compared with distrain's eager output."""
from __future__ import annotations

import numpy as np
import pytest

import distrain
import distrain.nn as nn
import distrain.nn.functional as F
from distrain import models
from distrain.engine.jit.onnx import export_onnx

from .onnx_oracle import check_export, eager, random


@pytest.fixture(autouse=True)
def _seed():
    distrain.manual_seed(0)


def test_mlp_with_softmax(tmp_path):
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4), nn.Softmax(dim=-1)).eval()
    check_export(model, [random(3, 6)], [random(7, 6, seed=1)], tmp_path)


def _trained_statistics(model, *shape):
    """Give every BatchNorm running statistics that are not 0 and 1, then switch to eval."""
    model.train()
    with distrain.no_grad():
        for seed in range(3):
            model(distrain.tensor(random(*shape, seed=seed) * 2 + 0.5))
    return model.eval()


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False),
                                      nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.flatten = nn.Flatten()
        self.head = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x):
        return self.head(self.flatten(self.features(x)))


def test_small_cnn(tmp_path):
    model = _trained_statistics(SmallCNN(), 4, 3, 8, 8)
    check_export(model, [random(2, 3, 8, 8)], [random(5, 3, 8, 8, seed=1)], tmp_path)


class CustomForward(nn.Module):
    """Sizes read from the input (view(x.size(0), -1), b * t), permute, cat, slicing, arithmetic, reductions."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)
        self.scale = nn.Parameter(distrain.tensor([0.5, -1.0, 2.0, 1.5, 0.25, 3.0]))

    def forward(self, x):  # x: (batch, 3, 4)
        b, t, f = x.shape
        h = self.proj(x.reshape(b * t, f)).view(b, t, -1)  # (b, t, 6)
        h = F.relu(h) * self.scale + 1.0 - h.mean(dim=-1, keepdim=True)
        mixed = distrain.cat([h, h.permute(0, 2, 1).transpose(1, 2) * 2], dim=2)  # (b, t, 12)
        pooled = mixed.view(x.size(0), -1)[:, 1::2]  # (b, 18)
        gate = distrain.sigmoid(pooled.sum(1, keepdim=True) / 3) ** 2
        return (pooled * gate).softmax(-1), distrain.stack([pooled.max(dim=1)[0], -pooled.amin(1)], dim=1)


@pytest.mark.parametrize("opset", [11, 13, 17, 18])
def test_custom_forward_at_every_opset_form(tmp_path, opset):
    check_export(CustomForward().eval(), [random(2, 3, 4)], [random(5, 3, 4, seed=1)], tmp_path, opset=opset)


class NormGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.up = nn.Linear(8, 16)
        self.act = nn.GELU()
        self.tanh_gelu = nn.GELU(approximate="tanh")
        self.down = nn.Linear(16, 8)

    def forward(self, x):
        h = self.up(self.norm(x))
        return self.down(self.act(h) + self.tanh_gelu(h)) + x


@pytest.mark.parametrize("opset", [17, 20])  # 20: ONNX's own Gelu; 17: written with Erf and Tanh
def test_layer_norm_and_gelu(tmp_path, opset):
    model = NormGelu().eval()
    check_export(model, [random(2, 5, 8)], [random(4, 5, 8, seed=1)], tmp_path, opset=opset)


def test_forward_hooks_of_a_converted_layer_are_recorded(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh()).eval()
    model[0].register_forward_pre_hook(lambda module, args: (args[0] * 2,))
    model[0].register_forward_hook(lambda module, args, output: output + args[0].sum(1, keepdim=True))
    check_export(model, [random(2, 4)], [random(5, 4, seed=1)], tmp_path)


def test_registry_mlp_with_dropout_in_eval(tmp_path):
    model = models.create("mlp", input_shape=(1, 8, 8), hidden=(32, 16), num_classes=10, dropout=0.2).eval()
    check_export(model, [random(3, 1, 8, 8)], [random(6, 1, 8, 8, seed=1)], tmp_path)


def test_registry_cnn(tmp_path):
    model = _trained_statistics(models.create("cnn", input_shape=(1, 8, 8), num_classes=10, width=8), 4, 1, 8, 8)
    check_export(model, [random(2, 1, 8, 8)], [random(5, 1, 8, 8, seed=1)], tmp_path)


def test_registry_resnet18(tmp_path):
    model = _trained_statistics(models.create("resnet18", num_classes=10, stem="cifar"), 2, 3, 8, 8)
    check_export(model, [random(2, 3, 8, 8)], [random(3, 3, 8, 8, seed=1)], tmp_path)


def test_plain_function_with_a_closed_over_parameter(tmp_path):
    weight = nn.Parameter(distrain.tensor(random(5, 3)))

    def function(x, y):
        return distrain.tanh(x @ weight) + y.t().unsqueeze(0).squeeze(0).t()

    check_export(function, [random(2, 5), random(2, 3, seed=1)], [random(4, 5, seed=2), random(4, 3, seed=3)], tmp_path)


def test_traced_graph_object_exports_its_function_and_example_inputs(tmp_path):
    """distrain.jit.trace's graphs carry `.function` and `.example_inputs`: export_onnx takes one as the model."""

    class Traced:
        def __init__(self, function, example_inputs):
            self.function, self.example_inputs = function, example_inputs

        def __call__(self, *inputs):
            return self.function(*inputs)

    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh()).eval()
    x = random(4, 3)
    path = tmp_path / "traced.onnx"
    export_onnx(Traced(model, (distrain.tensor(x),)), str(path), None)
    import onnxruntime

    got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, eager(model, [x])[0], rtol=1e-5, atol=1e-6)


def test_names_numpy_inputs_and_list_dynamic_axes(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2)).eval()
    path = tmp_path / "named.onnx"
    proto = export_onnx(model, str(path), np.ones((2, 3), np.float32), input_names=["features"],
                        output_names=["logits"], dynamic_axes={"features": [0], "logits": {0: "n"}})
    assert [i.name for i in proto.graph.input] == ["features"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "features_dim_0"
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "n"


def test_embedding_with_integer_input(tmp_path):
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)).eval()
    ids = np.array([[1, 2, 9], [0, 3, 3]], dtype=np.int64)
    other = np.array([[4, 4, 4], [5, 6, 7], [8, 0, 1]], dtype=np.int64)
    check_export(model, [ids], [other], tmp_path)


def test_without_dynamic_axes_every_size_is_fixed(tmp_path):
    model = CustomForward().eval()
    path = tmp_path / "fixed.onnx"
    proto = export_onnx(model, str(path), distrain.tensor(random(2, 3, 4)))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 4]
    assert not any(node.op_type == "Shape" for node in proto.graph.node)  # sizes are constants


def test_values_the_forward_does_not_use_are_left_out(tmp_path):
    linear = nn.Linear(5, 3)
    unused = nn.Linear(5, 4)

    def forward(x):
        unused(x).mean()  # computed, never used
        assert x.size(0) * 2 > 0  # a size read for Python only
        return linear(x)

    proto = export_onnx(forward, str(tmp_path / "pruned.onnx"), distrain.tensor(random(2, 5)),
                        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    assert [node.op_type for node in proto.graph.node] == ["Gemm"]
    assert sorted(tuple(tensor.dims) for tensor in proto.graph.initializer) == [(3,), (3, 5)]
