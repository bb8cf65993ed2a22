"""The error ONNX export raises when a model cannot be written as an ONNX graph.

Data-dependent Python during export (a tensor's value in an `if`, `.item()`, `.numpy()`)
raises the capture error of `distrain.jit` (jit/errors.py: CaptureError) instead: it is the
same mistake, made while tracing for any static graph.
"""
from __future__ import annotations

from ....errors import DistrainError


class OnnxExportError(DistrainError, RuntimeError):
    """A model, op or argument that ONNX export cannot write: the message names the op or layer, its input
    shapes, the lowest ONNX opset that has an equivalent (or that ONNX has none), and what to do."""
