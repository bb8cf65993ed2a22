"""Python-side changes a replay would not repeat: noticed by comparing modules before and after capture.

A replay runs only the recorded array calls. A forward that counts its calls in
`self.calls += 1`, swaps a layer, rebinds a parameter's `.data`, or keeps a tensor on
`self` for later makes a change that happens once, during capture, and never again: the
graph would silently diverge from eager. So every module the capture can see is
snapshotted first (its attributes, its registries, each parameter's array) and compared
after; any difference is a CaptureError naming the module and attribute. New attributes
that hold plain Python values are allowed (a layer may cache something on first use);
new or changed attributes that hold tensors made during the capture are not.
"""
from __future__ import annotations

from ..tensor import Tensor
from .traced_array import TracedArray

_REGISTRIES = ("_parameters", "_buffers", "_modules")
_IGNORED = frozenset(_REGISTRIES) | {"_non_persistent_buffers", "_state_dict_hooks", "_load_state_dict_pre_hooks"}


def _holds_capture(value):
    if isinstance(value, TracedArray):
        return True
    if isinstance(value, Tensor):
        return isinstance(value._data, TracedArray)
    if isinstance(value, (list, tuple)):
        return any(_holds_capture(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_capture(item) for item in value.values())
    return False


def _frozen(value):
    """What to compare an attribute by: the value for plain data, the object (and items) otherwise."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, complex)):
        return ("value", value)
    if isinstance(value, tuple) and all(item is None or isinstance(item, (bool, int, float, str)) for item in value):
        return ("value", value)
    if isinstance(value, list):
        return ("list", id(value), tuple(id(item) for item in value))
    if isinstance(value, dict):
        return ("dict", id(value), tuple((key, id(item)) for key, item in value.items()))
    return ("object", id(value))


class ModuleSnapshot:
    """The Python-side state of `modules` (named), to compare after a capture."""

    def __init__(self, named_modules, ignore=()):
        self.entries = []
        self.ignored = _IGNORED | frozenset(ignore)
        for path, module in named_modules:
            attributes = {key: (_frozen(value), value) for key, value in vars(module).items()
                          if key not in self.ignored}
            registries = {name: tuple((key, id(item)) for key, item in getattr(module, name, {}).items())
                          for name in _REGISTRIES}
            arrays = {key: (tensor, tensor._data, tensor._requires_grad)
                      for key, tensor in [*module._parameters.items(), *module._buffers.items()] if tensor is not None}
            self.entries.append((path, module, attributes, registries, arrays))

    def differences(self, swapped, strict=False):
        """Every Python-side change since the snapshot, in words. `swapped`: id(tensor) -> array it had.

        `strict` (the guards): any new attribute counts (a patched `forward`); otherwise (after a capture) only
        new attributes holding tensors made during it do, as a layer may cache plain values on first use."""
        found = []
        for path, module, attributes, registries, arrays in self.entries:
            where = f"module {path or '(the model)'} ({type(module).__name__})"
            for name, before in registries.items():
                after = tuple((key, id(item)) for key, item in getattr(module, name, {}).items())
                if after != before:
                    kind = name.strip("_")[:-1] if name != "_buffers" else "buffer"
                    found.append(f"{where}: its {kind}s changed ({[k for k, _ in before]} -> {[k for k, _ in after]}, "
                                 "or one was replaced)")
            for key, (tensor, array, requires_grad) in arrays.items():
                current = swapped.get(id(tensor), tensor._data)
                if current is not array:
                    found.append(f"{where}: `{key}.data` was replaced by another array")
                if tensor._requires_grad != requires_grad:
                    found.append(f"{where}: `{key}.requires_grad` changed to {tensor._requires_grad}")
            current = {key: value for key, value in vars(module).items() if key not in self.ignored}
            for key, (frozen, value) in attributes.items():
                if key not in current:
                    found.append(f"{where}: attribute `{key}` was deleted")
                elif _frozen(current[key]) != frozen:
                    found.append(f"{where}: attribute `{key}` changed ({_short(value)} -> {_short(current[key])})")
            for key in current.keys() - attributes.keys():
                if strict:
                    found.append(f"{where}: new attribute `{key}` ({_short(current[key])})")
                elif _holds_capture(current[key]):
                    found.append(f"{where}: new attribute `{key}` keeps a tensor computed during the capture")
        return found


def _short(value):
    text = repr(value) if not isinstance(value, (Tensor, TracedArray)) else f"a tensor of shape {tuple(value.shape)}"
    return text if len(text) <= 40 else text[:37] + "..."
