"""ONNX export: `export_onnx(model, path, example_inputs)` writes what the model computes as an ONNX graph.

The model runs once on the example inputs while its ops and layers are recorded (NOTE [ How
export_onnx records ] in recorder.py); the converters (convert_*.py) turn each into ONNX
operators of the requested opset (opsets.py); the model is checked and written by writer.py.
Importing this package does not import onnx: only a call to export_onnx does.
"""
from __future__ import annotations


def export_onnx(module_or_graph, path, example_inputs, opset=17, dynamic_axes=None, input_names=None,
                output_names=None):
    """Write `module_or_graph` as an ONNX model to `path`, for ONNX Runtime and other ONNX tools.

    Args:
        module_or_graph: an `nn.Module`, a function of tensors, or a graph from `distrain.jit.trace`
            (its traced function is exported; its example inputs serve when example_inputs is None).
        path: the .onnx file to write (all or nothing: a temporary beside it is renamed onto it).
        example_inputs: a Tensor or a tuple of Tensors (NumPy arrays accepted) to run the model on once.
        opset: the ONNX opset to write (default 17, the first with LayerNormalization; 11 at least).
        dynamic_axes: as in torch.onnx.export, e.g. `{"input": {0: "batch"}, "output": {0: "batch"}}`:
            those axes may have another size when the graph runs. Without it every size is fixed.
        input_names, output_names: the graph's value names (default "input"/"output", or "input0",
            "input1", ... for several).

    Returns the written `onnx.ModelProto` (with inferred shapes).

    The module is exported as it computes in its current mode, and export is for inference: a
    layer that computes differently in training mode (Dropout with p > 0, BatchNorm, InstanceNorm
    with running statistics, recurrent or attention dropout) raises an OnnxExportError telling
    to call `model.eval()` first (torch warns and exports anyway; distrain refuses rather than
    write a graph that disagrees with the module). An op or layer without a converter raises
    an OnnxExportError naming it, its input shapes and the lowest ONNX opset that has an
    equivalent; Python control flow on a tensor's value (`if x.sum() > 0`, `.item()`,
    `.numpy()`) raises distrain.jit's CaptureError naming the file and line.

    Example::

        >>> model = distrain.nn.Sequential(distrain.nn.Linear(4, 8), distrain.nn.ReLU()).eval()
        >>> proto = distrain.jit.export_onnx(model, "model.onnx", distrain.randn(2, 4),
        ...                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    """
    try:
        import onnx
    except ImportError as exc:
        raise ImportError('distrain.jit.export_onnx needs the onnx package: pip install "distrain[onnx]" '
                          '(onnx, and onnxruntime to run the exported model)') from exc
    from .export import export

    return export(onnx, module_or_graph, path, example_inputs, opset, dynamic_axes, input_names, output_names)


__all__ = ["export_onnx"]
