"""The state of a saved graph: its weights, buffers and gradients by role and name, the optimizer, the generators.

A graph's state slots are bound by reference to a model's arrays (graph.py). Saving
describes each one by its role — "parameter", "flat_grad" (the parameter's view of its
flat gradient buffer), "grad" (a gradient of its own), "buffer" — and by the name the
user knows ("0.weight", "bn.running_mean", as in `model.state_dict()`), with its array.
Loading rebuilds real tensors from that: Parameters (packed into fresh flat buffers when
the originals were packed, engine/flat.py), buffers, gradient views; binds the graph's
slots to their arrays; and, for a training step, rebuilds the optimizer from its class
name, param groups and state_dict, so the next step updates exactly as the original's.
"""
from __future__ import annotations

from ...errors import DistrainError
from .errors import SerializationError
from .portable_names import portable_class_name, resolve
from .value_encoding import malformed

ROLES = ("parameter", "flat_grad", "grad", "buffer")


# -- saving -------------------------------------------------------------------------------------
def describe_state(capture, main):
    """[{slot, role, name, requires_grad, persistent, packed, array}] for every state slot of `capture`.

    `main`: the module whose own names the user knows (the traced module, the step's model), or None.
    """
    slot_of = {id(array): slot for slot, array in capture.graph.state.items()}
    roles = {}
    for _, module in capture.modules:
        for parameter in module._parameters.values():
            if parameter is None:
                continue
            roles.setdefault(id(parameter), ("parameter", parameter, True))
            for role, grad in (("flat_grad", parameter._flat_grad), ("grad", parameter._grad)):
                if grad is not None:
                    roles.setdefault(id(grad), (role, parameter, True))
        for key, buffer in module._buffers.items():
            if buffer is not None:
                roles.setdefault(id(buffer), ("buffer", buffer, key not in module._non_persistent_buffers))
    names = {id(tensor): name for name, tensor in reversed(capture.state_tensors)}
    if main is not None:
        names.update({id(t): name for name, t in reversed([*main.named_parameters(), *main.named_buffers()])})
    entries = []
    for capture_name, tensor in capture.state_tensors:
        slot = slot_of.get(id(tensor._data))
        if slot is None or id(tensor) not in roles:
            raise SerializationError(f"distrain.jit: cannot save: `{capture_name}` is no longer the array its graph was "
                                     "captured with (the model changed since); call it once more so that it is "
                                     "captured again, then save")
        role, owner, persistent = roles[id(tensor)]
        entries.append({"slot": slot, "role": role, "name": names[id(owner)], "requires_grad": tensor.requires_grad,
                        "persistent": persistent, "packed": getattr(owner, "_flat", None) is not None,
                        "array": tensor._data})
    return entries


def user_names(entries, main):
    """(parameter names in the model's order, [(state_dict key, entry name)]) for the loaded object's accessors."""
    by_id = {}
    if main is not None:
        for name, tensor in [*main.named_parameters(), *main.named_buffers()]:
            by_id.setdefault(id(tensor), name)
        parameters = [name for name, _ in main.named_parameters()]
        state_dict = [(key, by_id[id(tensor)]) for key, tensor in main.state_dict(keep_vars=True).items()]
        return parameters, state_dict
    parameters = [e["name"] for e in entries if e["role"] == "parameter"]
    return parameters, [(e["name"], e["name"]) for e in entries if e["role"] in ("parameter", "buffer")
                        and e["persistent"]]


def describe_optimizer(optimizer, name_of):
    """The optimizer as data: class name, packing, defaults, param groups by parameter name, state_dict.

    `name_of`: id(parameter) -> its saved name.
    """
    from ..optim.optimizer import Optimizer

    groups = []
    for number, group in enumerate(optimizer.param_groups):
        missing = [tuple(p.shape) for p in group["params"] if id(p) not in name_of]
        if missing:
            raise SerializationError(f"distrain.jit: cannot save the step: param group {number} of the optimizer "
                                     f"holds parameters of shapes {missing} that are not the model's; only the "
                                     "model's parameters can be restored")
        groups.append({**{k: v for k, v in group.items() if k != "params"},
                       "params": [name_of[id(p)] for p in group["params"]]})
    return {"class": portable_class_name(type(optimizer), Optimizer, "the optimizer"), "packed": optimizer.packed,
            "defaults": dict(optimizer.defaults), "param_groups": groups, "state_dict": optimizer.state_dict()}


def describe_generators(graph):
    """{generator key: state} of the generators the graph draws from, as they are now."""
    return {key: generator.get_state() for key, generator in graph.draws.items()}


# -- loading ------------------------------------------------------------------------------------
class RestoredState:
    """The tensors of a loaded graph: `parameters` and `buffers` by name, and (name, tensor) per state slot."""

    def __init__(self, entries, graph, where, optimizer=None):
        from ..flat import pack_parameters
        from ..nn.parameter import Parameter
        from ..tensor import _make

        self.where = where
        self.entries = [self._checked(entry, graph, index) for index, entry in enumerate(entries)]
        self.parameters, self.buffers = {}, {}
        for entry in self.entries:
            array = entry["array"].copy()  # own memory: the file's buffer is let go
            if entry["role"] == "parameter":
                self.parameters.setdefault(entry["name"], Parameter(_make(array), entry["requires_grad"]))
            elif entry["role"] == "buffer":
                self.buffers.setdefault(entry["name"], _make(array))
        packed = [self.parameters[e["name"]] for e in self.entries if e["role"] == "parameter" and e["packed"]]
        if packed:
            pack_parameters(packed)
        self.optimizer = restore_optimizer(optimizer, self.parameters, where) if optimizer is not None else None
        self.tensors = []  # the tensor of each entry, once every array is in place (the optimizer may pack)
        for entry in self.entries:
            tensor = self._tensor(entry, _make)
            graph.state[entry["slot"]] = tensor._data
            self.tensors.append(tensor)
        unbound = [v.slot for v in graph.values if v.kind == "state" and v.slot not in graph.state]
        if unbound:
            raise malformed(where, f"state values {unbound[:5]} have no saved array")

    def _checked(self, entry, graph, index):
        fields = {"slot": int, "role": str, "name": str, "requires_grad": bool, "persistent": bool, "packed": bool}
        if type(entry) is not dict or any(type(entry.get(key)) is not kind for key, kind in fields.items()):
            raise malformed(self.where, f"state entry {index} is not a map with fields {sorted(fields)}")
        slot, array = entry["slot"], entry.get("array")
        if entry["role"] not in ROLES or not 0 <= slot < len(graph.values) or graph.values[slot].kind != "state" \
                or slot in graph.state or not hasattr(array, "shape") or hasattr(array, "requires_grad"):
            raise malformed(self.where, f"state entry {index} ({entry['name'][:60]!r}) has a bad role, slot or array")
        value = graph.values[slot]
        if tuple(array.shape) != tuple(value.shape) or array.dtype != value.dtype:
            raise malformed(self.where, f"state {entry['name'][:60]!r} holds a {array.dtype} array of shape "
                                         f"{tuple(array.shape)}, its slot a {value.dtype} one of {tuple(value.shape)}")
        graph.state[slot] = None  # taken (a second entry for this slot is malformed); bound below
        return entry

    def _tensor(self, entry, make):
        role, name = entry["role"], entry["name"]
        if role == "parameter":
            return self.parameters[name]
        if role == "buffer":
            return self.buffers[name]
        owner = self.parameters.get(name)
        if owner is None:
            raise malformed(self.where, f"gradient {name!r:.60} belongs to no saved parameter")
        if role == "grad":
            owner._grad = make(entry["array"].copy())
            return owner._grad
        if owner._flat_grad is None:
            raise malformed(self.where, f"parameter {name!r:.60} has a flat gradient but was not packed")
        owner._flat_grad._data[...] = entry["array"]
        return owner._flat_grad


def restore_optimizer(saved, parameters, where):
    """The optimizer `describe_optimizer` described, over the loaded `parameters` (name -> Parameter)."""
    from ..optim.optimizer import Optimizer

    if type(saved) is not dict or type(saved.get("param_groups")) is not list or \
            type(saved.get("defaults")) is not dict or type(saved.get("state_dict")) is not dict:
        raise malformed(where, "the optimizer is not a map with class, defaults, param_groups and state_dict")
    cls = resolve(saved.get("class"), "class", Optimizer)
    groups = []
    for group in saved["param_groups"]:
        names = group.get("params") if type(group) is dict else None
        if type(names) is not list or any(type(name) is not str or name not in parameters for name in names):
            raise malformed(where, "an optimizer param group names parameters that were not saved")
        groups.append({**group, "params": [parameters[name] for name in names]})
    try:
        optimizer = cls(groups, packed=saved.get("packed"))
        optimizer.defaults = dict(saved["defaults"])
        optimizer.load_state_dict(saved["state_dict"])
    except (TypeError, ValueError, KeyError) as exc:
        raise SerializationError(f"distrain.jit: {where}: its optimizer ({cls.__name__}) cannot be restored: "
                                 f"{type(exc).__name__}: {exc}") from exc
    return optimizer


def restore_generators(saved, graph, where):
    """A private Generator per key the graph draws from, restored to the saved state (NOTE [ Saved graph format ])."""
    from ..random import Generator

    if type(saved) is not dict:
        raise malformed(where, "its generator states are not a map")
    generators = {}
    for key, state in saved.items():
        if type(key) is not str or type(state) is not dict or type(state.get("seed")) is not int:
            raise malformed(where, f"generator {key!r:.40} has no seed")
        try:
            generator = Generator(key, seed=state["seed"])
            generator.set_state(state)
        except (TypeError, ValueError, KeyError, DistrainError) as exc:
            raise malformed(where, f"generator {key!r:.40} cannot be restored here ({exc})") from None
        generators[key] = generator
    for instruction in graph.instructions:
        if instruction.kind == "draw" and instruction.target[0] not in generators:
            raise malformed(where, f"it draws from generator {instruction.target[0]!r:.40}, whose state is missing")
    graph.draws = generators
    return generators

