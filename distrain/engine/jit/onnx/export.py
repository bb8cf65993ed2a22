"""export_onnx's steps: arguments checked, one recorded run, graph inputs and outputs named, checked, written.

See NOTE [ How export_onnx records ] in recorder.py for the run itself.
"""
from __future__ import annotations

import numpy

from ...autograd import enable_grad
from ...factories import tensor as make_tensor
from ...nn.module import Module
from ...tensor import Tensor
from . import convert_attention, convert_elementwise, convert_factories, convert_layers, convert_recurrent
from . import convert_reduce, convert_shape
from .export_errors import OnnxExportError
from .graph_builder import GraphBuilder
from .opsets import check_opset
from .recorder import Recorder, patched
from .writer import check_and_write, make_model

CONVERTERS = (convert_attention, convert_elementwise, convert_factories, convert_layers, convert_recurrent,
              convert_reduce, convert_shape)  # importing them fills registry.FUNCTIONS and registry.MODULES


def export(onnx, module_or_graph, path, example_inputs, opset, dynamic_axes, input_names, output_names):
    check_opset(opset)
    function = module_or_graph
    if not isinstance(function, Module) and hasattr(function, "function") and hasattr(function, "example_inputs"):
        example_inputs = function.example_inputs if example_inputs is None else example_inputs
        function = function.function  # a distrain.jit.trace graph: export what it traced
    if not callable(function):
        raise OnnxExportError(f"export_onnx: module_or_graph must be an nn.Module, a function of tensors or a "
                              f"traced graph, got {type(function).__name__}")
    inputs = _example_inputs(example_inputs)
    input_names = _names("input_names", input_names, len(inputs), "input")
    dynamic_axes = _dynamic_axes(dynamic_axes or {}, inputs, input_names)
    parameter_names, module_paths = {}, {}
    if isinstance(function, Module):
        for name, tensor in list(function.named_parameters()) + list(function.named_buffers()):
            parameter_names[id(tensor)] = name
        module_paths = {id(module): path or type(module).__name__ for path, module in function.named_modules()}
    builder = GraphBuilder(onnx, opset, parameter_names,
                           dynamic_shapes=any(dynamic_axes.get(name) for name in input_names))
    graph_inputs, traced = [], []
    for tensor, name in zip(inputs, input_names):
        builder.reserve(name)
        graph_inputs.append(_value_info(onnx, name, tensor, dynamic_axes.get(name, {}), builder))
        traced.append(_traced(tensor))
    recorder = Recorder(builder, module_paths)
    with enable_grad(), patched(recorder):
        for tensor, name in zip(traced, input_names):
            builder.bind(tensor, name)
        result = function(*traced)
    outputs = _flat_outputs(result)
    output_names = _names("output_names", output_names, len(outputs), "output")
    unknown = set(dynamic_axes) - set(input_names) - set(output_names)
    if unknown:
        raise OnnxExportError(f"export_onnx: dynamic_axes names {sorted(unknown)}, which are neither inputs "
                              f"{input_names} nor outputs {output_names}")
    graph_outputs = [_output(onnx, builder, tensor, name, dynamic_axes.get(name, {}), graph_inputs)
                     for tensor, name in zip(outputs, output_names)]
    builder.prune(output_names)
    graph = onnx.helper.make_graph(builder.nodes, "distrain", graph_inputs, graph_outputs, builder.initializers)
    return check_and_write(onnx, make_model(onnx, graph, opset), path)


def _example_inputs(example_inputs):
    if isinstance(example_inputs, (Tensor, numpy.ndarray)):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)) or not example_inputs:
        raise OnnxExportError(f"export_onnx: example_inputs must be a Tensor or a non-empty tuple of Tensors (numpy "
                              f"arrays accepted), got {type(example_inputs).__name__}")
    tensors = []
    for position, value in enumerate(example_inputs):
        if isinstance(value, numpy.ndarray):
            value = make_tensor(value)
        if not isinstance(value, Tensor):
            raise OnnxExportError(f"export_onnx: example_inputs[{position}] is a {type(value).__name__}; every "
                                  f"input of an ONNX graph is a tensor (pass other arguments with functools.partial)")
        tensors.append(value)
    return tensors


def _traced(tensor):
    """The input as the run sees it: a copy that autograd follows when it is floating point, so that an op
    the export does not record leaves a grad_fn behind it (graph_builder.GraphBuilder.value)."""
    copy = tensor.detach()
    if copy._data.dtype.kind == "f":
        return copy.requires_grad_(True).clone()
    return copy.clone()


def _names(argument, names, count, stem):
    if names is None:
        return [stem] if count == 1 else [f"{stem}{i}" for i in range(count)]
    names = list(names)
    if len(names) != count or not all(isinstance(name, str) and name for name in names):
        raise OnnxExportError(f"export_onnx: {argument} must give {count} non-empty names (one per {stem}), got "
                              f"{names}")
    return names


def _dynamic_axes(dynamic_axes, inputs, input_names):
    """{name: {axis: dim name}}; a list of axes gets names of their own, as in torch.onnx.export."""
    if not isinstance(dynamic_axes, dict):
        raise OnnxExportError(f"export_onnx: dynamic_axes must be a dict like {{'input': {{0: 'batch'}}}}, got "
                              f"{type(dynamic_axes).__name__}")
    result = {}
    for name, axes in dynamic_axes.items():
        if isinstance(axes, (list, tuple)):
            axes = {axis: f"{name}_dim_{axis}" for axis in axes}
        if not isinstance(axes, dict):
            raise OnnxExportError(f"export_onnx: dynamic_axes[{name!r}] must be a dict {{axis: name}} or a list of "
                                  f"axes, got {axes!r}")
        if name in input_names:
            ndim = inputs[input_names.index(name)].ndim
            bad = [axis for axis in axes if not isinstance(axis, int) or not -ndim <= axis < ndim]
            if bad:
                raise OnnxExportError(f"export_onnx: dynamic_axes[{name!r}] names axes {bad}, but input {name!r} has "
                                      f"{ndim} dimensions")
            axes = {axis % ndim: dim for axis, dim in axes.items()}
        result[name] = axes
    return result


def _value_info(onnx, name, tensor, axes, builder):
    shape = [axes.get(axis, size) for axis, size in enumerate(tensor.shape)]
    return onnx.helper.make_tensor_value_info(name, builder.element_type(tensor._data.dtype), shape)


def _flat_outputs(result):
    if isinstance(result, Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        return [tensor for item in result for tensor in _flat_outputs(item)]
    if result is None:
        return []
    raise OnnxExportError(f"export_onnx: the model returned a {type(result).__name__}; ONNX graphs return tensors "
                          f"(a Tensor, or tuples and lists of them)")


def _output(onnx, builder, tensor, name, axes, graph_inputs):
    """The graph output `name` for `tensor`: its producing node's output renamed, or an Identity when the value
    is a graph input, an initializer, or already another output."""
    builder.doing = f"output {name!r}"
    value = builder.value(tensor)
    builder.reserve(name)
    if builder.produced_by_node(value) and value not in builder.output_values:
        builder.rename(value, name)
    else:
        builder.nodes.append(onnx.helper.make_node("Identity", [value], [name], name=builder.fresh(f"{name}_Identity")))
    builder.output_values.append(name)
    dynamic = any(graph_input.type.tensor_type.shape.dim[i].dim_param for graph_input in graph_inputs
                  for i in range(len(graph_input.type.tensor_type.shape.dim)))
    shape = [axes.get(axis, None if dynamic else size) for axis, size in enumerate(tensor.shape)]
    return onnx.helper.make_tensor_value_info(name, builder.element_type(tensor._data.dtype), shape)
