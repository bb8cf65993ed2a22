"""One capture: run a function eagerly with its arrays traced, and keep what a replay needs.

What is traced (NOTE [ Capture at the array level ] in traced_array.py):
  - every tensor or array in the arguments: the graph's inputs;
  - every parameter, parameter gradient and buffer of the given modules: state, bound by
    reference, so a replay reads the current weights and writes gradients and running
    statistics where eager would.
Each traced tensor gets its TracedArray for the duration of the call and its own array
back afterwards, whatever happens. What the call changed on the Python side is then
checked (side_effects.py), and what it did to `.grad` attributes becomes bindings that a
replay re-applies (a parameter's `.grad` is its flat gradient view, or a new array).
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

from ..nn.module import Module
from ..tensor import Tensor
from .errors import CaptureError
from .graph import Graph, Ref
from .recorder import Recorder
from .side_effects import ModuleSnapshot
from .structure import flatten, unflatten
from .traced_array import TracedArray
from .verify import StateBefore


@dataclass
class Capture:
    graph: Graph
    result: object  # what the eager run returned (dropped once the first result is handed out)
    input_spec: tuple
    output_spec: tuple
    leaf_kinds: tuple  # per input leaf: "tensor" or "array"
    grad_bindings: list = field(default_factory=list)  # (tensor or input index, "slot"/"flat"/"none"/"tensor", what)
    state_tensors: list = field(default_factory=list)  # (name, tensor) bound as state
    modules: list = field(default_factory=list)  # (path, module)
    eager_outputs: list = field(default_factory=list)  # the arrays the graph's outputs had in the eager run
    before: object = None  # verify.StateBefore, when the capture is to be verified
    differentiable_outputs: tuple = ()  # positions of output tensors that had an autograd history eagerly
    had_grad: frozenset = frozenset()  # ids of the state tensors that had a .grad before the capture ran
    input_positions: tuple = ()  # which input leaves are the graph's inputs (a leaf passed twice is one)


def named_modules_of(modules):
    """(path, module) for every module reachable from `modules` (modules and loose tensors), each once."""
    found, seen = [], set()
    modules = [module for module in modules if isinstance(module, Module)]
    for index, module in enumerate(modules):
        prefix = "" if len(modules) == 1 else f"[{index}]"
        for path, sub in module.named_modules():
            if id(sub) not in seen:
                seen.add(id(sub))
                found.append((f"{prefix}.{path}" if prefix and path else prefix or path, sub))
    return found


def state_tensors_of(named_modules, loose=()):
    """(name, tensor) for every parameter, parameter gradient and buffer: what a capture binds as state."""
    found, seen = [], set()

    def add(name, tensor):
        if tensor is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            found.append((name, tensor))

    for path, module in named_modules:
        prefix = f"{path}." if path else ""
        for key, parameter in module._parameters.items():
            if parameter is None:
                continue
            add(prefix + key, parameter)
            add(prefix + key + ".grad", parameter._flat_grad)
            add(prefix + key + ".grad", parameter._grad)
        for key, buffer in module._buffers.items():
            add(prefix + key, buffer)
        for key, value in vars(module).items():  # a plain tensor kept on a module (a counter, a mask)
            if isinstance(value, Tensor):
                add(prefix + key, value)
    for index, tensor in enumerate(loose):
        add(f"a tensor the function reaches ({index})", tensor)
        if tensor._requires_grad and tensor.grad_fn is None:
            add(f"a tensor the function reaches ({index}).grad", tensor._grad)
    return found


def modules_in(function):
    """What a function can reach that a capture must bind: modules and loose tensors (see `reachable`)."""
    return reachable(function)


def reachable(function, depth=2):
    """Modules and tensors `function` can reach: itself if a module, its bound object, the functions and
    values its closure cells and the globals it names hold, and their attributes and containers, `depth`
    levels down. Their parameters, buffers and tensors are then state (bound by reference and guarded);
    anything missed is still read by reference, but its module's mode and hooks are not guarded (pass
    `modules=` to trace then)."""
    found, seen = [], set()

    def visit(value, level):
        if id(value) in seen or level < 0:
            return
        seen.add(id(value))
        if isinstance(value, (Module, Tensor)):
            found.append(value)
            return
        if isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                visit(item, level - 1)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item, level - 1)
        elif callable(value) and hasattr(value, "__code__"):
            visit_function(value, level - 1)
        elif hasattr(value, "__dict__") and not isinstance(value, type) and not callable(value):
            for item in vars(value).values():
                visit(item, level - 1)

    def visit_function(function, level):
        owner = getattr(function, "__self__", None)
        if owner is not None:
            visit(owner, level)
        function = getattr(function, "__func__", function)
        for cell in getattr(function, "__closure__", None) or ():
            try:
                visit(cell.cell_contents, level)
            except ValueError:
                continue
        code, namespace = getattr(function, "__code__", None), getattr(function, "__globals__", {})
        if code is not None:
            for name in code.co_names:
                if name in namespace and not isinstance(namespace[name], type(sys)):
                    visit(namespace[name], level)

    if isinstance(function, Module):
        return [function]
    visit_function(function, depth)
    return found


_one_capture_at_a_time = threading.Lock()  # a capture swaps arrays of shared tensors: two at once would mix them


def run_capture(function, args, kwargs, modules, verify=True) -> Capture:
    """Capture `function(*args, **kwargs)` (see `_run_capture`), one capture in the process at a time.

    While a capture runs, the tensors it binds hold TracedArrays: other threads must not use that model
    then (as they must not while another thread trains it)."""
    with _one_capture_at_a_time:
        return _run_capture(function, args, kwargs, modules, verify)


def _run_capture(function, args, kwargs, modules, verify=True) -> Capture:
    """Capture `function(*args, **kwargs)` with the state of `modules` bound (see the module docstring).

    With `verify`, what the run may change is copied first (verify.py), for the verifying replay.
    """
    leaves = []
    input_spec = flatten((tuple(args), dict(kwargs)), leaves)
    named = named_modules_of(modules)
    state = state_tensors_of(named, [tensor for tensor in modules if isinstance(tensor, Tensor)])
    before = StateBefore(state, list({id(array): array for array in (leaf._data if isinstance(leaf, Tensor) else leaf
                                                                      for leaf in leaves)}.values())) if verify else None
    snapshot = ModuleSnapshot(named)  # before any array is swapped for its TracedArray
    recorder = Recorder()
    recorder.snapshots = {} if verify else None
    swapped = {}  # id(tensor) -> (tensor, its own array, the TracedArray given)
    arguments = []
    bound_arrays, positions = {}, []  # an array passed twice is one input (the guards key the aliasing)
    for index, leaf in enumerate(leaves):
        if isinstance(leaf, Tensor):
            if id(leaf) not in swapped:
                traced = recorder.bind_input(leaf._data, f"input {index}")
                swapped[id(leaf)] = (leaf, leaf._data, traced)
                leaf._data = traced
                positions.append(index)
            arguments.append(leaf)
        else:
            if id(leaf) not in bound_arrays:
                bound_arrays[id(leaf)] = recorder.bind_input(leaf, f"input {index}")
                positions.append(index)
            arguments.append(bound_arrays[id(leaf)])
    for name, tensor in state:
        if id(tensor) not in swapped:
            traced = recorder.bind_state(tensor._data, name)
            swapped[id(tensor)] = (tensor, tensor._data, traced)
            tensor._data = traced
    grads_before = {id(tensor): tensor._grad for _, tensor in state if _is_leaf_with_grad(tensor)}
    input_grads_before = [leaf._grad if isinstance(leaf, Tensor) else None for leaf in leaves]
    call_args, call_kwargs = unflatten(input_spec, iter(arguments))
    rebound = []
    try:
        with recorder:
            result = function(*call_args, **call_kwargs)
    finally:
        recorder.finish()
        for tensor, array, traced in swapped.values():
            if tensor._data is not traced:
                rebound.append(tensor)
            tensor._data = array
    own_arrays = {id(array): traced.slot for _, array, traced in swapped.values()}
    changes = snapshot.differences({})
    if rebound:
        names = {id(tensor): name for name, tensor in state}
        changes += [f"`{names.get(id(tensor), 'an input')}.data` was replaced by another array" for tensor in rebound]
    if changes:
        raise CaptureError("distrain.jit: the captured function changed Python-side state, which a replay would not "
                           "repeat (only array computations are replayed):\n  - " + "\n  - ".join(changes) +
                           "\nKeep such changes out of the captured function (count steps outside it, keep tensors "
                           "in buffers that the graph updates, swap layers before capturing).")
    output_leaves = []
    output_spec = flatten(result, output_leaves, "the result")
    output_refs = []
    eager_outputs, differentiable = [], []
    datas = [leaf._data if isinstance(leaf, Tensor) else leaf for leaf in output_leaves]  # before any is settled
    for position, (leaf, data) in enumerate(zip(output_leaves, datas)):
        if isinstance(leaf, Tensor) and leaf.grad_fn is not None:
            differentiable.append(position)
        eager_outputs.append(data.value if type(data) is TracedArray else data)
        if type(data) is TracedArray:
            output_refs.append(Ref(data.slot))
        elif id(data) in own_arrays:
            output_refs.append(Ref(own_arrays[id(data)]))
        else:
            output_refs.append(Ref(recorder.external(data)))
    capture = Capture(recorder.graph, result, input_spec, output_spec,
                      tuple("tensor" if isinstance(leaf, Tensor) else "array" for leaf in leaves),
                      state_tensors=state, modules=named, eager_outputs=eager_outputs, before=before,
                      differentiable_outputs=tuple(differentiable),
                      had_grad=frozenset(key for key, grad in grads_before.items() if grad is not None),
                      input_positions=tuple(positions))
    for name, tensor in state:
        if id(tensor) in grads_before and tensor._grad is not grads_before[id(tensor)]:
            capture.grad_bindings.append((tensor, *_grad_binding(tensor, own_arrays)))
    for index, leaf in enumerate(leaves):
        if isinstance(leaf, Tensor) and leaf._grad is not input_grads_before[index]:
            capture.grad_bindings.append((index, *_grad_binding(leaf, own_arrays)))
    for leaf in output_leaves:  # the result's tensors get their arrays back (a returned .grad is settled already)
        if isinstance(leaf, Tensor):
            _settle(leaf)
    # the replay returns the outputs, then the arrays that become new .grad tensors
    recorder.graph.output = (tuple(output_refs),
                             tuple(Ref(what) for _, how, what, _ in capture.grad_bindings if how == "slot"))
    capture.eager_outputs += [array for _, how, _, array in capture.grad_bindings if how == "slot"]
    if before is not None:
        before.add_outside_arrays(recorder.graph, recorder.snapshots, recorder.generator_states)
    recorder.snapshots = None
    capture.grad_bindings = [binding[:3] for binding in capture.grad_bindings]
    return capture


def _is_leaf_with_grad(tensor):
    return tensor._requires_grad and tensor.grad_fn is None


def _settle(tensor):
    """Give a tensor made during capture its concrete array (it is handed to the user)."""
    if type(tensor._data) is TracedArray:
        tensor._data = tensor._data.value


def _grad_binding(tensor, own_arrays):
    """How a replay sets `tensor.grad`: ("none",), ("flat",), ("tensor", the same tensor) or ("slot", slot)."""
    grad = tensor._grad
    if grad is None:
        return ("none", None, None)
    if grad is getattr(tensor, "_flat_grad", None):
        return ("flat", None, None)
    if type(grad._data) is TracedArray:
        slot = grad._data.slot
        _settle(grad)
        return ("slot", slot, grad._data)
    if id(grad._data) in own_arrays:
        return ("tensor", grad, None)
    raise CaptureError("distrain.jit: a gradient was set to an array the graph does not know; run this step eagerly")
