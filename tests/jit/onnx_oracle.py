"""Helpers for the ONNX export tests: export, check the file as a stranger would, run it in ONNX Runtime.

    check_export(model, [x], [x_other_batch], tmp_path)

exports `model` with a dynamic batch axis, loads the written file back, runs the onnx checker
(full check) and strict shape inference on it, then runs it in ONNX Runtime on the example
inputs and on inputs of another batch size, comparing every output with distrain's eager
output on the same inputs. Returns the ONNX outputs of both runs, for tests that also compare
with PyTorch.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime

import distrain
from distrain.engine.jit.onnx import export_onnx

RTOL, ATOL = 1e-5, 1e-6


def flat(result):
    if isinstance(result, distrain.Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        return [tensor for item in result for tensor in flat(item)]
    return []


def eager(model, arrays):
    with distrain.no_grad():
        return [t.numpy() for t in flat(model(*[distrain.tensor(a) for a in arrays]))]


def batch_axes(count, axis=0, name="batch"):
    return {f"{stem}{'' if count[stem] == 1 else i}": {axis: name} for stem in count for i in range(count[stem])}


def check_export(model, example, other, tmp_path, *, opset=17, dynamic_axes=None, rtol=RTOL, atol=ATOL,
                 input_names=None, output_names=None):
    """Export `model` on arrays `example`, then compare ONNX Runtime with eager distrain on `example` and `other`
    (lists of NumPy arrays; `other` has another batch size). dynamic_axes defaults to axis 0 of every input and
    output. Returns ([onnx outputs on example], [onnx outputs on other])."""
    outputs = len(eager(model, example))
    if dynamic_axes is None:
        dynamic_axes = batch_axes({"input": len(example), "output": outputs})
    path = str(tmp_path / "model.onnx")
    export_onnx(model, path, tuple(distrain.tensor(a) for a in example), opset=opset, dynamic_axes=dynamic_axes,
                input_names=input_names, output_names=output_names)
    written = onnx.load(path)
    onnx.checker.check_model(written, full_check=True)
    onnx.shape_inference.infer_shapes(written, check_type=True, strict_mode=True)
    assert written.opset_import[0].version == opset
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [graph_input.name for graph_input in session.get_inputs()]
    results = []
    for arrays in (example, other):
        got = session.run(None, dict(zip(names, arrays)))
        expected = eager(model, arrays)
        assert len(got) == len(expected)
        for position, (g, e) in enumerate(zip(got, expected)):
            assert g.shape == e.shape, f"output {position}: onnx shape {g.shape} != eager {e.shape}"
            assert g.dtype == e.dtype, f"output {position}: onnx dtype {g.dtype} != eager {e.dtype}"
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"output {position}")
        results.append(got)
    return results


def random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
