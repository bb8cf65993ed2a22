"""Save a captured graph with its weights; load it in a process that never imports the model's code.

    traced = distrain.jit.trace(model, example)           # or step = distrain.jit.compile_step(...)
    traced.save("model.dtgraph")                          # step.save("step.dtgraph") after a step
    ...
    loaded = distrain.jit.load("model.dtgraph")           # in another process: no model class needed
    outputs = loaded(inputs)                              # loss = loaded_step(inputs, targets)

NOTE [ Saved graph format ]
A saved graph is a distrain checkpoint file (distrain/checkpoint/__init__.py: msgpack
header + raw array bytes, CRC-32 over every header byte and every array, written to a
temporary file, fsynced and renamed), whose root is a map:
  format "distrain.jit graph", version GRAPH_VERSION (a reader refuses versions it does not
    know), what ("trace" or "step"), device (where the graph computes: "cpu", "cuda:0");
  graph: values (kind, shape, dtype, strides, root, producer, name per slot), instructions
    (kind, target, args, kwargs, outputs, writes, location, errstate), input slots, output,
    constants (slot, array) — graph_encoding.py; every function by its importable name,
    resolved at load only inside an allow-list (NOTE [ Names a saved graph may use ]);
  state: per state slot its role, the model's name for it and its array (saved_state.py);
  inputs: the input structure and per tensor its kind, array module, shape, dtype and
    strides (the loaded object's guard); output_spec; grad_bindings (how a replay sets
    `.grad`: per parameter or input, "flat", "slot", "tensor" or "none");
  generators: the state of each random generator the graph draws from, at save time;
  parameters and state_dict: the model's names, in its order;
  optimizer (a step only): class name, packing, defaults, param groups by parameter name,
    state_dict (its flat state arrays, step counts).
No pickle anywhere: loading reads data and resolves allowed names, nothing else.

Random draws: the loaded object draws from its own generators (`loaded.generators`),
restored to the state the original's had when it was saved. A loaded training step so
goes on with exactly the dropout masks the original would have drawn next (if nothing
else drew from that generator in between), as a resumed checkpoint does, and loading
never changes the loading process's default generator. Reseed with
`loaded.generators["cpu"].manual_seed(s)`. (A CUDA generator's state is its seed only:
it restarts from that seed.)

Loaded graphs replay the captured computation only: an output that had an autograd
history when captured carries a node that explains, on backward, why it has none now (as
a trace's does); a saved DistributedDataParallel step runs on one process without
gradient reduction.
"""
from __future__ import annotations

import os

from ...errors import CheckpointError, DeviceError
from ..backend import device_of
from ..nn.module import Module
from .capture import Capture
from .compiled_step import CompiledStep
from .errors import SerializationError
from .graph_encoding import decode_graph, encode_graph
from .loaded import InputGuard, LoadedFunction, LoadedStep
from .optimize import build_program
from .saved_state import (
    RestoredState,
    describe_generators,
    describe_optimizer,
    describe_state,
    restore_generators,
    user_names,
)
from .value_encoding import decode_spec, decode_value, encode_value, malformed

FORMAT = "distrain.jit graph"
GRAPH_VERSION = 1


def save(traced, path) -> None:
    """Write a TracedFunction's or CompiledStep's latest graph, weights and (for a step) optimizer to `path`.

    Raises SerializationError naming the op and its location when an op has no
    importable name inside the allow-list (a lambda, numpy.frompyfunc, your own function).
    """
    # the checkpoint package imports the engine: imported when used
    from ...checkpoint.writer import save as write_checkpoint

    step = traced if isinstance(traced, CompiledStep) else None
    if step is not None:
        if step.traced is None:
            raise SerializationError("distrain.jit: cannot save a compiled step before its first call: run one step "
                                     "(which captures the graph), then save")
        traced, main = step.traced, step.network
    else:
        main = traced.function if isinstance(traced.function, Module) else None
    entry = traced._latest
    if not entry.guard.holds(check_grads=False):  # (whether .grad is set says how a call runs, not what to save)
        raise SerializationError("distrain.jit: cannot save: the model changed since its graph was captured:\n  - " +
                                 "\n  - ".join(entry.guard.differences(check_grads=False)) + "\nCall it once more (it captures again), "
                                 "then save.")
    capture = entry.capture
    state = describe_state(capture, main)
    parameters, state_dict = user_names(state, main)
    _refuse_namedtuples(capture.input_spec, "its inputs")
    _refuse_namedtuples(capture.output_spec, "its result")
    spec, metadata, aliases = entry.key[:3]
    leaves = tuple((kind, "numpy" if item[0].__module__ == "numpy" else item[0].__module__.split(".")[0],
                    tuple(item[1]), encode_value(item[2], "an input's dtype"), tuple(item[3]))
                   for kind, item in zip(capture.leaf_kinds, metadata))
    name_of = {id(tensor): e["name"] for e, (_, tensor) in zip(state, capture.state_tensors)}
    tree = {
        "format": FORMAT, "version": GRAPH_VERSION, "what": "step" if step is not None else "trace",
        "device": _device(capture, metadata), "graph": encode_graph(capture.graph), "state": state,
        "inputs": {"spec": encode_value(spec, "the inputs' structure"), "leaves": leaves, "aliases": tuple(aliases)},
        "output_spec": encode_value(capture.output_spec, "the result's structure"),
        "differentiable_outputs": tuple(capture.differentiable_outputs),
        "grad_bindings": [_binding(binding, capture, state) for binding in capture.grad_bindings],
        "generators": describe_generators(capture.graph), "parameters": parameters, "state_dict": state_dict,
        "optimizer": describe_optimizer(step.optimizer, name_of) if step is not None else None,
    }
    try:
        write_checkpoint(tree, path)
    except TypeError as exc:  # a value the checkpoint format cannot hold, e.g. in an optimizer's param group
        raise SerializationError(f"distrain.jit: cannot save to {_file_name(path)}: {exc}") from exc


def load(path, map_location=None):
    """Load a graph saved by `TracedFunction.save` / `CompiledStep.save`, to run without the model's code.

    Args:
        path: the file (a path or a binary file object).
        map_location: where the weights go, as for distrain.load (e.g. {"cuda:1": "cuda:0"});
            a graph computes on the kind of device it was captured on (its calls are numpy
            or cupy calls): moving a CPU graph to a GPU or back is refused.

    Returns a LoadedFunction (a trace: `loaded(*inputs)`) or a LoadedStep (a compile_step:
    `loss = loaded(inputs, targets)`), see loaded.py.

    Raises SerializationError for a damaged or truncated file (checksums), a file that is
    not a saved graph, a version this distrain does not know, a name outside the allow-list
    (nothing outside it is imported), or a malformed graph.
    """
    from ...checkpoint.reader import load as read_checkpoint

    name = _file_name(path)
    where = f"saved graph {name}"
    try:
        tree = read_checkpoint(path, map_location=map_location)
    except (CheckpointError, DeviceError) as exc:
        raise SerializationError(f"distrain.jit: cannot load {where}: {exc}. Save the graph again from the model "
                                 "that made it.") from None
    what = _check_header(tree, where)
    graph = decode_graph(tree.get("graph"), where)
    restored = RestoredState(_list(tree, "state", where), graph, where,
                             tree.get("optimizer") if what == "step" else None)
    _check_device(tree.get("device"), [*graph.constants.values(), *graph.state.values()], where)
    generators = restore_generators(tree.get("generators"), graph, where)
    guard = _input_guard(tree.get("inputs"), name, where)
    output_spec = decode_spec(tree.get("output_spec"), where)
    bindings = [_restore_binding(binding, restored, len(guard.leaves), where)
                for binding in _list(tree, "grad_bindings", where)]
    differentiable = tree.get("differentiable_outputs")
    if type(differentiable) is not tuple or not all(type(index) is int and 0 <= index < len(graph.output[0])
                                                    for index in differentiable):
        raise malformed(where, "its differentiable outputs are not output positions")
    capture = Capture(graph, None, guard.spec, output_spec, tuple(leaf[0] for leaf in guard.leaves),
                      grad_bindings=bindings,
                      state_tensors=[(e["name"], t) for e, t in zip(restored.entries, restored.tensors)],
                      differentiable_outputs=differentiable,
                      input_positions=tuple(index for index, first in enumerate(guard.aliases) if first == index))
    parameter_names = _list(tree, "parameters", where)
    state_dict_names = _list(tree, "state_dict", where)
    tensors = {**restored.parameters, **restored.buffers}
    if any(type(n) is not str or n not in restored.parameters for n in parameter_names) or any(
            type(pair) not in (list, tuple) or len(pair) != 2 or type(pair[0]) is not str or pair[1] not in tensors
            for pair in state_dict_names):
        raise malformed(where, "its parameter or state_dict names are not those of its saved tensors")
    kind = LoadedStep if what == "step" else LoadedFunction
    return kind(build_program(capture), guard, restored, parameter_names, state_dict_names, generators, name)


def _file_name(path):
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(getattr(path, "name", path))


def _input_guard(inputs, name, where):
    """The InputGuard of the saved input description (structure, and kind/module/shape/dtype/strides per tensor)."""
    if type(inputs) is not dict:
        raise malformed(where, "it does not describe its inputs")
    spec = decode_spec(inputs.get("spec"), where)
    leaves = tuple(_leaf(leaf, where) for leaf in _list(inputs, "leaves", where))
    aliases = inputs.get("aliases")
    if type(aliases) is not tuple or len(aliases) != len(leaves) or \
            not all(type(index) is int and 0 <= index < len(leaves) for index in aliases):
        raise malformed(where, "the inputs' aliases do not match its tensors")
    return InputGuard(spec, leaves, aliases, name)


def _check_header(tree, where):
    if type(tree) is not dict or tree.get("format") != FORMAT:
        raise SerializationError(f"distrain.jit: {where} is a distrain checkpoint but not a saved graph (no format "
                                 f"{FORMAT!r}); read it with distrain.load, or save the graph with .save(path)")
    version = tree.get("version")
    if version != GRAPH_VERSION:
        raise SerializationError(f"distrain.jit: {where} has graph format version {version!r:.20}, but this distrain "
                                 f"reads version {GRAPH_VERSION}; load it with the distrain that saved it (upgrade), "
                                 "or save the graph again with this one")
    if tree.get("what") not in ("trace", "step"):
        raise malformed(where, f"it says it is a {tree.get('what')!r:.20}, neither a trace nor a step")
    return tree["what"]


def _device(capture, metadata):
    arrays = [*capture.graph.state.values(), *capture.graph.constants.values()]
    if arrays:
        return str(device_of(arrays[0]))
    on_gpu = [item for item in metadata if item[0].__module__.split(".")[0] == "cupy"]
    return f"cuda:{on_gpu[0][5]}" if on_gpu else "cpu"


def _check_device(saved, arrays, where):
    """Arrays on the kind of device the graph computes on (map_location may move them between GPUs, not off)."""
    if type(saved) is not str:
        raise malformed(where, "it names no device")
    for array in arrays:
        if (str(device_of(array)) == "cpu") != (saved == "cpu"):
            raise SerializationError(f"distrain.jit: {where} was captured on {saved}, and its calls are "
                                     f"{'numpy' if saved == 'cpu' else 'cupy'} calls; map_location moved its arrays "
                                     f"to {device_of(array)}, where they cannot run. Load it with map_location=None "
                                     "(or a device of the same kind), or capture the model again on that device.")


def _refuse_namedtuples(spec, what):
    if spec[0] == "namedtuple":
        raise SerializationError(f"distrain.jit: cannot save: {what} hold a namedtuple ({spec[1].__name__}), a class "
                                 "of your code that a loading process does not have; use a tuple or dict instead")
    for item in (spec[2] if spec[0] == "dict" else spec[1] if spec[0] in ("tuple", "list") else ()):
        _refuse_namedtuples(item, what)


def _binding(binding, capture, state):
    """A grad binding with tensors replaced by ["state", entry index] or ["input", leaf index]."""
    owner, how, what = binding
    index = {id(tensor): i for i, (_, tensor) in enumerate(capture.state_tensors)}

    def reference(tensor):
        if type(tensor) is int:
            return ["input", tensor]
        if id(tensor) not in index:
            raise SerializationError("distrain.jit: cannot save: a gradient the graph sets belongs to a tensor that "
                                     "is neither an input nor the model's; return it instead of setting .grad")
        return ["state", index[id(tensor)]]

    return [reference(owner), how, reference(what) if how == "tensor" else what]


def _restore_binding(binding, restored, leaf_count, where):
    def tensor(reference):
        if type(reference) is list and len(reference) == 2 and type(reference[1]) is int:
            if reference[0] == "input" and 0 <= reference[1] < leaf_count:
                return reference[1]
            if reference[0] == "state" and 0 <= reference[1] < len(restored.tensors):
                return restored.tensors[reference[1]]
        raise malformed(where, f"a gradient binding refers to {reference!r:.60}")

    if type(binding) is not list or len(binding) != 3 or binding[1] not in ("flat", "slot", "tensor", "none"):
        raise malformed(where, f"gradient binding {binding!r:.60} is not (owner, how, what)")
    owner, how, what = tensor(binding[0]), binding[1], binding[2]
    if how == "flat" and (type(owner) is int or getattr(owner, "_flat_grad", None) is None):
        raise malformed(where, "a flat gradient binding names a tensor without a flat gradient")
    return (owner, how, tensor(what) if how == "tensor" else what)


def _leaf(leaf, where):
    if type(leaf) is not tuple or len(leaf) != 5 or leaf[0] not in ("tensor", "array") or \
            leaf[1] not in ("numpy", "cupy") or type(leaf[2]) is not tuple or type(leaf[4]) is not tuple:
        raise malformed(where, f"an input description {leaf!r:.80} is malformed")
    return (leaf[0], leaf[1], leaf[2], decode_value(leaf[3], 0, where), leaf[4])


def _list(tree, key, where):
    found = tree.get(key) if type(tree) is dict else None
    if type(found) not in (list, tuple):
        raise malformed(where, f"its {key!r} field is a {type(found).__name__}, not a list")
    return found

