"""Recording one eager run as ONNX nodes: the names patched during export, and what each wrapper does.

NOTE [ How export_onnx records ]
The model runs once, eagerly, on the example inputs. For the length of that run (and only
then: `patched` restores everything in a `finally`) every way user code reaches an op is
wrapped:
- `Module.__call__`: a layer with a converter (registry.MODULES) gets, for that call, a
  `forward` that runs the real one unseen (`depth` > 0, so the ops inside are not recorded a
  second time) and converts the layer whole; its forward hooks run outside, recorded. A
  distrain layer without a converter raises (its ops are imported inside distrain, unpatched,
  so they would be missed); any other module (the user's, containers) runs its forward, whose
  ops are recorded one by one, op functions it keeps as attributes included.
- every Tensor method and operator, and the op functions of `distrain.*` and
  `distrain.nn.functional.*`: an op with a converter is recorded, one without raises, both
  only when an argument is dynamic (computed from the inputs). Ops on constants only run and
  their results are constants of the export (folded).
- `bool()`, `item()`, `tolist()`, `numpy()`, `float()`, `int()`, `__index__`, `__array__` of a
  dynamic tensor raise a CaptureError naming the user's line: the value decides Python
  control flow, which one graph cannot hold.
- with dynamic axes, `size()` and `shape` of a dynamic tensor give SymbolicInts (symbolic_sizes.py).
Identity of tensors is the link between ops (graph_builder.py). The patches are global: do
not run other distrain code in other threads while an export runs.
"""
from __future__ import annotations

import contextlib
import types

from ... import factories
from ...nn import functional
from ...nn.module import Module
from ...ops import TENSOR_METHODS
from ...tensor import Size, Tensor
from ..errors import CaptureError
from ..locations import user_location
from .export_errors import OnnxExportError
from .graph_builder import describe
from .opsets import unsupported
from .registry import FUNCTIONS, arguments, layer_entry
from .symbolic_sizes import SymbolicInt, size_of

# Python-value exits of a tensor: each would bake the example's value into the graph.
VALUE_EXITS = ("__bool__", "item", "tolist", "numpy", "__float__", "__int__", "__index__", "__array__")
FACTORIES = ("zeros", "ones", "full", "zeros_like", "ones_like", "full_like")
# distrain's own layers that are made of other layers; their forward is recorded op by op.
RECORDED_BY_OPS = ("Sequential", "ModuleList", "ModuleDict", "TransformerEncoder", "TransformerEncoderLayer")


def _has_symbolic(value):
    if isinstance(value, SymbolicInt):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_symbolic(item) for item in value)
    return False


def bind_outputs(builder, out, names):
    """Bind each tensor in `out` to the name at the same place in `names` (same nesting)."""
    if names is None:  # a converter with nothing to bind: metadata (stride), or a Python result
        return
    if isinstance(out, Tensor):
        builder.bind(out, names)
    elif isinstance(out, (tuple, list)):
        for item, name in zip(out, names):
            bind_outputs(builder, item, name)


class Recorder:
    def __init__(self, builder, module_paths):
        self.builder = builder
        self.depth = 0  # > 0 while distrain itself runs (inside a recorded op or converted layer)
        self.module_paths = module_paths  # id(module) -> its path in the exported model

    # -- the wrappers ------------------------------------------------------------------
    def _eager(self, function, args, kwargs):
        self.depth += 1
        try:
            return function(*args, **kwargs)
        finally:
            self.depth -= 1

    def _convert(self, doing, converter, out, args, kwargs):
        """Run `converter` and bind `out` to its names. Converters run as distrain does (depth > 0): they see
        the tensors' real sizes, and a tensor op they use is not recorded."""
        builder = self.builder
        previous, builder.doing = builder.doing, doing
        self.depth += 1
        try:
            bind_outputs(builder, out, converter(builder, out, *args, **kwargs))
        finally:
            self.depth -= 1
            builder.doing = previous
        return out

    def op(self, label, function):
        """`function` recorded with its converter, or refused when it has none (see the NOTE)."""
        converter = FUNCTIONS.get(function)
        recorder = self

        def wrapper(*args, **kwargs):
            if recorder.depth or not (recorder.builder.any_dynamic((args, kwargs)) or _has_symbolic(args)):
                out = recorder._eager(function, args, kwargs)
                if not recorder.depth:
                    recorder.builder.fold(out)
                return out
            doing = describe(label, (args, kwargs))
            if converter is None:
                raise unsupported(label.rsplit(".", 1)[-1], doing, recorder.builder.opset)
            named = arguments(function, args, kwargs)
            precheck = getattr(converter, "precheck", None)
            if precheck is not None:
                precheck(doing, **named)
            out = recorder._eager(function, args, kwargs)
            return recorder._convert(doing, converter, out, (), named)

        wrapper.__wrapped__ = function
        return wrapper

    def module_call(self, original_call):
        """Module.__call__ during export. A converted layer's `forward` is replaced, for this call, by one that
        runs it unseen and converts it; Module.__call__ itself still runs with recording on, so that the
        layer's forward hooks (user code) are recorded around it."""
        recorder = self

        def __call__(module, *args, **kwargs):
            if recorder.depth:
                return original_call(module, *args, **kwargs)
            builder = recorder.builder
            entry = None if "forward" in module.__dict__ else layer_entry(module)
            path = recorder.module_paths.get(id(module), type(module).__name__)
            previous, builder.scope = builder.scope, f"/{path}/"
            if entry is None and not _is_distrain_layer(module):  # the user's module or a container
                replaced = recorder._wrap_stored_ops(module)
            else:
                replaced = {"forward": None}
                module.__dict__["forward"] = recorder._converted_forward(module, entry, path)
            try:
                return original_call(module, *args, **kwargs)
            finally:
                builder.scope = previous
                for name, value in replaced.items():
                    if value is None:
                        del module.__dict__[name]
                    else:
                        module.__dict__[name] = value

        return __call__

    def _converted_forward(self, module, entry, path):
        recorder, builder = self, self.builder
        forward = type(module).forward

        def converted(*args, **kwargs):
            if not builder.any_dynamic((args, kwargs)):  # a layer applied to constants: a constant
                out = recorder._eager(forward, (module, *args), kwargs)
                builder.fold(out)
                return out
            doing = describe(f"{path} ({type(module).__name__})", (args, kwargs))
            if entry is None:
                raise unsupported(type(module).__name__, doing, builder.opset)
            converter, differs_in_training = entry
            if module.training and differs_in_training is not None and differs_in_training(module):
                raise OnnxExportError(
                    f"{path} ({type(module).__name__}) is in training mode, where it computes differently (dropout "
                    f"masks, batch statistics) and may update its state; ONNX export writes the inference graph. "
                    f"Call model.eval() before export_onnx.")
            out = recorder._eager(forward, (module, *args), kwargs)
            return recorder._convert(doing, converter, out, (module, *args), kwargs)

        return converted

    def _wrap_stored_ops(self, module):
        """Op functions kept as attributes (`self.activation = F.gelu`, bound before the export patched the
        namespaces) wrapped for this forward; returns the originals to put back."""
        stored = {name: value for name, value in module.__dict__.items()
                  if isinstance(value, types.FunctionType) and value.__module__.startswith("distrain.engine.ops")}
        for name, function in stored.items():
            module.__dict__[name] = self.op(function.__name__, function)
        return stored

    def value_exit(self, name, original):
        recorder = self

        def wrapper(tensor, *args, **kwargs):
            if not recorder.depth and recorder.builder.is_dynamic(tensor):
                raise CaptureError(
                    f"Tensor.{name} of a tensor computed from the inputs (shape {tuple(tensor.shape)}) during "
                    f"export_onnx, at {user_location(2)}: its value would decide Python code (an `if`, a loop, a "
                    f"number) for this one example only, and the graph would hold that one branch. Write the choice "
                    f"with tensor ops (distrain.where, masks, clamp), or move it outside the exported model.")
            return original(tensor, *args, **kwargs)

        return wrapper

    def size(self, original):
        recorder = self

        def size(tensor, dim=None):
            sizes = original(tensor)
            if recorder.depth or not recorder.builder.is_dynamic(tensor):
                return sizes if dim is None else sizes[dim]
            name = recorder.builder.value(tensor)
            symbolic = Size(size_of(name, axis, value) for axis, value in enumerate(sizes))
            return symbolic if dim is None else symbolic[dim]

        return size


def _is_distrain_layer(module):
    cls = type(module)
    return cls.__module__.startswith("distrain.engine.nn.") and cls.__name__ not in RECORDED_BY_OPS


@contextlib.contextmanager
def patched(recorder):
    """Install every wrapper of the NOTE above; restore the originals however the run ends."""
    import distrain

    saved = []

    def patch(owner, name, value):
        saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    try:
        for name, function in TENSOR_METHODS.items():
            if Tensor.__dict__.get(name) is function:
                patch(Tensor, name, recorder.op(f"Tensor.{name}", function))
        for name in ("T", "mT", "data"):
            view = Tensor.__dict__[name]
            patch(Tensor, name, property(recorder.op(f"Tensor.{name}", view.fget), view.fset))
        patch(Tensor, "detach", recorder.op("Tensor.detach", Tensor.__dict__["detach"]))
        for namespace, label in ((distrain, "distrain"), (functional, "distrain.nn.functional")):
            for name, function in list(vars(namespace).items()):
                if isinstance(function, types.FunctionType) and (
                        function.__module__.startswith("distrain.engine.ops") or
                        (function.__module__ == factories.__name__ and name in FACTORIES)):
                    patch(namespace, name, recorder.op(f"{label}.{name}", function))
        patch(Module, "__call__", recorder.module_call(Module.__call__))
        for name in VALUE_EXITS:
            patch(Tensor, name, recorder.value_exit(name, Tensor.__dict__[name]))
        if recorder.builder.dynamic_shapes:
            shape_of = Tensor.__dict__["shape"].fget
            sized = recorder.size(shape_of)
            patch(Tensor, "size", sized)
            patch(Tensor, "shape", property(sized))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)

