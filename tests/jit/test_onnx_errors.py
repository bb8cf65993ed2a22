"""What export_onnx refuses, and how: the op or layer named with its shapes and the lowest ONNX opset that has it,
the user's file and line for a data-dependent branch, model.eval() for layers in training mode; and that a
refused export leaves the library unpatched, the model's state and an existing file untouched."""
from __future__ import annotations

import sys

import numpy as np
import onnx.defs
import pytest

import distrain
import distrain.nn as nn
import distrain.nn.functional as F
from distrain.engine.jit.errors import CaptureError
from distrain.engine.jit.onnx import export_onnx
from distrain.engine.jit.onnx.export_errors import OnnxExportError

from .onnx_oracle import check_export, random


def first_opset(op_type):
    """The oracle: onnx's own schema history."""
    return min(schema.since_version for schema in onnx.defs.get_all_schemas_with_history()
               if schema.name == op_type and schema.domain == "")


def export(model, tmp_path, *inputs, **options):
    inputs = inputs or (distrain.tensor(random(2, 5)),)
    return export_onnx(model, str(tmp_path / "model.onnx"), inputs, **options)


class Lambda(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *inputs):
        return self.function(*inputs)


@pytest.mark.parametrize("call, label", [(lambda x: distrain.cumsum(x * 2, dim=1), "distrain.cumsum"),
                                         (lambda x: (x * 2).cumsum(1), "Tensor.cumsum")])
def test_unsupported_op_names_itself_its_shapes_and_the_onnx_opset(tmp_path, call, label):
    with pytest.raises(OnnxExportError) as caught:
        export(Lambda(call), tmp_path)
    message = str(caught.value)
    assert label in message and "(2, 5)" in message
    assert f"CumSum from opset {first_opset('CumSum')}" in message
    assert "compute it outside" in message


def test_op_without_onnx_equivalent_says_so(tmp_path):
    expected = r"distrain.cdist \(input shapes \(2, 5\), \(2, 5\)\).*ONNX has no single"
    with pytest.raises(OnnxExportError, match=expected):
        export(Lambda(lambda x: distrain.cdist(x, x + 1)), tmp_path)


def test_unsupported_layer_is_named_with_its_path(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.PixelShuffle(2)).eval()
    with pytest.raises(OnnxExportError) as caught:
        export(model, tmp_path, distrain.tensor(random(1, 1, 2, 2)))
    message = str(caught.value)
    assert "1 (PixelShuffle) (input shape (1, 4, 2, 2))" in message
    assert f"DepthToSpace from opset {first_opset('DepthToSpace')}" in message


def test_layer_norm_below_opset_17_names_opset_17(tmp_path):
    model = nn.Sequential(nn.Linear(5, 5), nn.LayerNorm(5)).eval()
    with pytest.raises(OnnxExportError) as caught:
        export(model, tmp_path, opset=11)
    message = str(caught.value)
    assert "1 (LayerNorm) (input shape (2, 5))" in message and "LayerNormalization" in message
    assert f"from opset {first_opset('LayerNormalization')}" in message and "opset=17" in message
    check_export(model, [random(2, 5)], [random(3, 5, seed=1)], tmp_path, opset=17)  # and 17 works


class Branchy(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):
        y = x * 2
        if self.how(y):  # the line the error must name
            return y
        return -y


BRANCH_LINE = Branchy.forward.__code__.co_firstlineno + 2


BRANCHES = [lambda y: y.sum() > 0,
            lambda y: y.mean().item() > 0,
            lambda y: y.numpy()[0, 0],
            lambda y: float(y.max()) > 0,
            lambda y: y.tolist()[0][0] > 0,
            lambda y: np.asarray(y).sum() > 0]


@pytest.mark.parametrize("how", BRANCHES, ids=["bool", "item", "numpy", "float", "tolist", "array"])
def test_data_dependent_branch_names_the_file_and_line(tmp_path, how):
    """Where the value left the graph: the `if` itself for bool(), else the line that asked for the value."""
    with pytest.raises(CaptureError) as caught:
        export(Branchy(how), tmp_path)
    message = str(caught.value)
    line = BRANCH_LINE if how is BRANCHES[0] else how.__code__.co_firstlineno
    assert f"test_onnx_errors.py:{line}" in message, message
    assert "(shape (" in message and "distrain.where" in message


def test_value_of_a_constant_is_fine(tmp_path):
    """Parameters are constants of the export: a branch on one is Python, not data."""
    linear = nn.Linear(5, 3)

    def forward(x):
        return linear(x) * (2.0 if linear.weight.sum().item() > -100 else 0.0)

    check_export(forward, [random(2, 5)], [random(4, 5, seed=1)], tmp_path)


def test_training_mode_batch_norm_is_refused_before_it_runs(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))  # training mode
    before = model[1].running_mean.numpy().copy()
    with pytest.raises(OnnxExportError, match=r"1 \(BatchNorm2d\) is in training mode.*model.eval\(\)"):
        export(model, tmp_path, distrain.tensor(random(2, 1, 3, 3) + 5))
    np.testing.assert_array_equal(model[1].running_mean.numpy(), before)
    assert int(model[1].num_batches_tracked.item()) == 0


def test_training_mode_dropout_is_refused_and_zero_rate_dropout_is_not(tmp_path):
    with pytest.raises(OnnxExportError, match=r"\(Dropout\) is in training mode.*model.eval\(\)"):
        export(nn.Sequential(nn.Linear(5, 5), nn.Dropout(0.5)), tmp_path)
    check_export(nn.Sequential(nn.Linear(5, 5), nn.Dropout(0.0)), [random(2, 5)], [random(3, 5, seed=1)], tmp_path)


def test_functional_training_forms_are_refused(tmp_path):
    mean, var = distrain.zeros(5), distrain.ones(5)
    with pytest.raises(OnnxExportError, match=r"dropout .*training=True and p=0.5"):
        export(Lambda(lambda x: F.dropout(x, 0.5, training=True)), tmp_path)
    with pytest.raises(OnnxExportError, match=r"batch_norm .*training=True"):
        export(Lambda(lambda x: F.batch_norm(x, mean, var, training=True)), tmp_path)
    assert mean.numpy().tolist() == [0.0] * 5  # refused before the op updated the running mean


def test_op_the_export_cannot_see_is_named_by_its_autograd_node(tmp_path):
    from distrain.engine.ops.cumulative import cumsum  # bound before export: not patched

    with pytest.raises(OnnxExportError, match=r"computed from the inputs by CumsumBackward0, an op the export did not "
                                              r"record"):
        export(Lambda(lambda x: cumsum(x * 2, 1) + 1), tmp_path)


def test_in_place_op_on_a_view_is_refused(tmp_path):
    def forward(x):
        y = x * 1
        y.view(-1).add_(1)
        return y

    with pytest.raises(OnnxExportError, match="in-place op on a view"):
        export(Lambda(forward), tmp_path)


def test_a_refused_export_restores_everything_and_keeps_the_old_file(tmp_path):
    originals = (distrain.Tensor.view, distrain.Tensor.__add__, distrain.Tensor.item, distrain.Tensor.size,
                 distrain.Tensor.__dict__["shape"], distrain.cat, F.relu, nn.Module.__call__)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(OnnxExportError):
        export_onnx(Lambda(lambda x: distrain.cumsum(x, 0)), str(path), distrain.tensor(random(2, 5)),
                    dynamic_axes={"input": {0: "batch"}})
    assert (distrain.Tensor.view, distrain.Tensor.__add__, distrain.Tensor.item, distrain.Tensor.size,
            distrain.Tensor.__dict__["shape"], distrain.cat, F.relu, nn.Module.__call__) == originals
    assert path.read_bytes() == b"previous"


def test_bad_arguments(tmp_path):
    model = nn.Linear(5, 2)
    with pytest.raises(OnnxExportError, match="opset must be an int from 11"):
        export(model.eval(), tmp_path, opset=10)
    with pytest.raises(OnnxExportError, match=r"dynamic_axes names \['wrong'\]"):
        export(model, tmp_path, dynamic_axes={"wrong": {0: "batch"}})
    with pytest.raises(OnnxExportError, match="input_names must give 1 non-empty names"):
        export(model, tmp_path, input_names=["a", "b"])
    with pytest.raises(OnnxExportError, match=r"example_inputs\[0\] is a str"):
        export_onnx(model, str(tmp_path / "m.onnx"), ("text",))


def test_missing_onnx_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "distrain\[onnx\]"'):
        export(nn.Linear(5, 2), tmp_path)
