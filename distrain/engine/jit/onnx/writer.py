"""Checking and writing the ONNX model: checker, strict shape inference, then an all-or-nothing file write.

A model that fails `onnx.checker` or strict shape inference is an exporter bug, never a file
to hand to a user: both run before anything is written, and the file appears (through a
temporary beside it, fsynced and renamed: durable.replace_file) only once they pass. The
written model carries the inferred shapes of its intermediate values, which tools display.
"""
from __future__ import annotations

import os

from ....durable import replace_file
from .export_errors import OnnxExportError


def make_model(onnx, graph, opset):
    """The model with `opset` of the default domain and the oldest IR version that holds it (older runtimes
    read it too)."""
    import distrain

    opset_id = onnx.helper.make_opsetid("", opset)
    return onnx.helper.make_model(graph, opset_imports=[opset_id], producer_name="distrain",
                                  producer_version=distrain.__version__,
                                  ir_version=onnx.helper.find_min_ir_version_for([opset_id]))


def check_and_write(onnx, model, path):
    """Run the checker and strict shape inference, then write the (shape-annotated) model to `path`."""
    try:
        onnx.checker.check_model(model)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxExportError(f"export_onnx built a model that ONNX rejects (an exporter bug; please report it with "
                              f"the model): {exc}") from exc
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"export_onnx: cannot write {path}: directory {directory} does not exist; create it "
                                f"first")
    payload = inferred.SerializeToString()
    replace_file(path, lambda file: file.write(payload))
    return inferred
