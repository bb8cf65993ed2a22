"""The ONNX graph being recorded: nodes, initializers, and which distrain tensor is which ONNX value.

Tensors are known by identity. A tensor computed (by recorded ops) from the graph inputs is
*dynamic*: it has an ONNX value name and its numbers are unknown until the graph runs. Every
other tensor an op meets is a constant of the export and becomes an initializer the first
time it is used: a parameter or buffer (named by its path in the module, `features.0.weight`),
a tensor that recorded ops computed from constants only (folded: `self.weight.t()`), or a
tensor the forward made with a factory. A tensor that autograd saw being computed by an op
the export did not record (`grad_fn` is set, the builder never met it) can be none of these:
its value would be baked in for one input, so `value` raises, naming that op.

Converters talk to the builder in ONNX's terms (`node`, `constant`, `ints`) and read shapes
and dtypes from the eager tensors they are given; the opset decides a few operators' forms
(axes as an attribute or as an input), chosen here once (`reduce`, `squeeze`, `unsqueeze`,
`split`) instead of in every converter.
"""
from __future__ import annotations

import numpy

from ...tensor import Tensor
from .export_errors import OnnxExportError
from .opsets import require

# ONNX switched these operators' `axes` from an attribute to an input at the given opset.
AXES_AS_INPUT = {"ReduceSum": 13, "Squeeze": 13, "Unsqueeze": 13, "Split": 13, "ReduceMean": 18, "ReduceMax": 18,
                 "ReduceMin": 18, "ReduceProd": 18, "ReduceLogSumExp": 18, "ReduceSumSquare": 18, "ReduceL2": 18}
INT64_MAX = numpy.iinfo(numpy.int64).max


def describe(op_name, arguments):
    """'op (input shapes (2, 3), (3,))': how errors name the op being exported."""
    shapes = [tuple(t._data.shape) for t in _tensors(arguments)]
    listed = ", ".join(str(shape) for shape in shapes)
    return f"{op_name} (input shape{'s' if len(shapes) != 1 else ''} {listed or 'none'})"


def _tensors(value):
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class GraphBuilder:
    def __init__(self, onnx, opset, parameter_names, dynamic_shapes):
        self.onnx = onnx
        self.opset = opset
        self.dynamic_shapes = dynamic_shapes  # some input axis is dynamic: sizes read from tensors stay symbolic
        self.nodes = []
        self.initializers = []
        self.doing = "export_onnx"  # the op being converted, for error messages (see describe)
        self.scope = ""  # the module path of the op being converted, for node names
        self._values = {}  # id(tensor) -> (ONNX name, dynamic)
        self._alive = []  # every tensor in _values, so that no id is reused while the export runs
        self._parameter_names = parameter_names  # id(parameter or buffer) -> its path in the module
        self._folded = set()  # ids of tensors recorded ops computed from constants only
        self._taken = set()
        self._counts = {}  # hint -> the next suffix to try
        self.symbolic_cache = {}  # id(SymbolicInt) -> (it, its ONNX value name)
        self.output_values = []  # graph output names given so far

    # -- names ---------------------------------------------------------------------------
    def fresh(self, hint):
        """`hint`, or `hint_N` with the first N not taken (counted on per hint, so naming stays linear)."""
        name, count = hint, self._counts.get(hint, 0)
        if count:
            name = f"{hint}_{count}"
        while name in self._taken:
            count += 1
            name = f"{hint}_{count}"
        self._counts[hint] = count + 1
        self._taken.add(name)
        return name

    def reserve(self, name):
        if name in self._taken:
            raise OnnxExportError(f"export_onnx: the name {name!r} is given to two graph inputs or outputs; "
                                  f"give input_names and output_names that are all different")
        self._taken.add(name)

    def rename(self, old, new):
        """Give value `old` the name `new` everywhere: in every node and for every tensor bound to it."""
        for node in self.nodes:
            for field in (node.input, node.output):
                for position, item in enumerate(field):
                    if item == old:
                        field[position] = new
        for key, (name, dynamic) in list(self._values.items()):
            if name == old:
                self._values[key] = (new, dynamic)

    def prune(self, outputs):
        """Drop the nodes and initializers no graph output depends on (values the forward computed and did not
        use: a size read for a print, an unused branch of a tuple)."""
        needed, kept = set(outputs), []
        for node in reversed(self.nodes):
            if any(name in needed for name in node.output):
                kept.append(node)
                needed.update(name for name in node.input if name)
        self.nodes = kept[::-1]
        self.initializers = [tensor for tensor in self.initializers if tensor.name in needed]

    def produced_by_node(self, name):
        return any(name in node.output for node in self.nodes)

    # -- tensors and values -------------------------------------------------------------
    def bind(self, tensor, name, dynamic=True):
        """From now on `tensor` is the ONNX value `name` (an in-place op rebinds its target)."""
        self._values[id(tensor)] = (name, dynamic)
        self._alive.append(tensor)

    def is_dynamic(self, tensor):
        entry = self._values.get(id(tensor))
        return entry is not None and entry[1]

    def any_dynamic(self, arguments):
        """Whether a tensor in `arguments` is dynamic; raises for one that an unrecorded op computed."""
        dynamic = False
        for tensor in _tensors(arguments):
            if self.is_dynamic(tensor):
                dynamic = True
            else:
                self._check_constant(tensor)
        return dynamic

    def fold(self, value):
        """Tensors in `value` were computed by recorded ops from constants only: constants themselves. One that
        already was an initializer was changed in place: it becomes a new initializer at its next use."""
        for tensor in _tensors(value):
            entry = self._values.get(id(tensor))
            if entry is not None and not entry[1]:
                del self._values[id(tensor)]
            if id(tensor) not in self._values:
                self._folded.add(id(tensor))
                self._alive.append(tensor)

    def value(self, tensor):
        """The ONNX value name of `tensor`, making it an initializer if it is a constant of the export."""
        entry = self._values.get(id(tensor))
        if entry is not None:
            return entry[0]
        self._check_constant(tensor)
        hint = self._parameter_names.get(id(tensor), "constant")
        name = self.constant(tensor.__array__() if type(tensor._data) is not numpy.ndarray else tensor._data, hint)
        self.bind(tensor, name, dynamic=False)
        return name

    def _check_constant(self, tensor):
        """Refuse a tensor that is not dynamic and not known to be a constant, but that autograd saw computed."""
        if id(tensor) in self._values or id(tensor) in self._parameter_names or id(tensor) in self._folded:
            return
        if tensor.grad_fn is not None:
            raise OnnxExportError(
                f"{self.doing} uses a tensor of shape {tuple(tensor._data.shape)} computed from the inputs by "
                f"{tensor.grad_fn.name()}, an op the export did not record (called through a name it does not "
                f"patch, e.g. imported from distrain.engine.ops). Call it as distrain.<op>, a Tensor method or "
                f"distrain.nn.functional.<op>; a constant computed before the export should be detach()ed.")

    def operand(self, value, like):
        """The name of `value`: a tensor's value, or a Python number as a constant of `like`'s dtype."""
        if isinstance(value, Tensor):
            return self.value(value)
        return self.constant(numpy.asarray(value, dtype=like._data.dtype))

    # -- nodes and constants -----------------------------------------------------------
    def node(self, op_type, inputs, outputs=1, **attributes):
        """Append one node; returns its output name (or the list of them when outputs > 1)."""
        require(op_type, self.opset, self.doing)
        names = [self.fresh(f"{self.scope}{op_type}_out") for _ in range(outputs)]
        attributes = {key: value for key, value in attributes.items() if value is not None}
        self.nodes.append(self.onnx.helper.make_node(
            op_type, ["" if name is None else name for name in inputs], names,
            name=self.fresh(f"{self.scope}{op_type}"), **attributes))
        return names[0] if outputs == 1 else names

    def constant(self, array, hint="constant"):
        array = numpy.ascontiguousarray(array)
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def ints(self, values):
        return self.constant(numpy.asarray(list(values), dtype=numpy.int64), "ints")

    def cast(self, name, from_dtype, to_dtype):
        if numpy.dtype(from_dtype) == numpy.dtype(to_dtype):
            return name
        return self.node("Cast", [name], to=self.element_type(to_dtype))

    def element_type(self, dtype):
        return self.onnx.helper.np_dtype_to_tensor_dtype(numpy.dtype(dtype))

    # -- operators whose form depends on the opset -------------------------------------
    def _axes_form(self, op_type, inputs, axes, **attributes):
        if axes is None:
            return self.node(op_type, inputs, **attributes)
        if self.opset >= AXES_AS_INPUT[op_type]:
            return self.node(op_type, inputs + [self.ints(axes)], **attributes)
        return self.node(op_type, inputs, axes=list(axes), **attributes)

    def reduce(self, op_type, name, axes, keepdims):
        """Reduce over `axes` (None: all of them)."""
        return self._axes_form(op_type, [name], None if axes is None else list(axes), keepdims=int(keepdims))

    def squeeze(self, name, axes):
        return self._axes_form("Squeeze", [name], list(axes))

    def unsqueeze(self, name, axes):
        return self._axes_form("Unsqueeze", [name], list(axes))

    def split(self, name, sizes, axis):
        """Split along `axis` into pieces of the given sizes; returns their names."""
        if len(sizes) == 1:
            return [self.node("Identity", [name])]
        if self.opset >= AXES_AS_INPUT["Split"]:
            return self.node("Split", [name, self.ints(sizes)], outputs=len(sizes), axis=axis)
        return self.node("Split", [name], outputs=len(sizes), axis=axis, split=list(sizes))

    def shape_dim(self, name, axis):
        """A 1-element int64 value: the runtime size of axis `axis` of value `name`."""
        return self.node("Gather", [self.node("Shape", [name]), self.ints([axis])], axis=0)
