"""`Module`: the base class of every layer and model.

A model is a plain Python class: assigning a Parameter, a Module or a buffer to an
attribute registers it (`__setattr__`), so `parameters()`, `state_dict()`, `to()`,
`train()`/`eval()` and `zero_grad()` reach everything without the model listing it.
The registries are three dicts per module (`_parameters`, `_buffers`, `_modules`);
`__getattr__` is only consulted for names not found the normal way, so attribute reads
of ordinary fields cost nothing extra.

`state_dict()` is the one exchange format (checkpoints, transfer learning, DDP's
consistency checks): a flat ordered dict from dotted names ("features.0.weight") to
tensors that share storage with the module.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy

from ...errors import DeviceError, StateDictError
from .. import backend, dtypes
from ..autograd.grad_mode import no_grad
from ..autograd.graph import RemovableHandle
from ..tensor import Tensor, _make
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

# Bumped by every change to any module's attributes, registries, hooks or mode: a captured graph
# (distrain.jit) compares one number per replay, and looks closer only when it moved.
changes = [0]


class _ModuleHookHandle(RemovableHandle):
    """A module hook's handle: removing the hook is a change of the module too (see `changes`)."""

    __slots__ = ()

    def remove(self):
        changes[0] += 1
        super().remove()


class Module:
    """Base class for layers and models: subclass it, create layers in __init__, write forward.

    Example::

        >>> class TwoLayerNet(distrain.nn.Module):
        ...     def __init__(self, d_in, hidden, d_out):
        ...         super().__init__()
        ...         self.linear1 = distrain.nn.Linear(d_in, hidden)
        ...         self.linear2 = distrain.nn.Linear(hidden, d_out)
        ...     def forward(self, x):
        ...         return self.linear2(self.linear1(x).clamp(min=0))
        >>> model = TwoLayerNet(1000, 100, 10)
        >>> len(list(model.parameters()))
        4
    """

    training: bool

    def __init__(self):
        set_field = object.__setattr__
        set_field(self, "training", True)
        set_field(self, "_parameters", {})
        set_field(self, "_buffers", {})
        set_field(self, "_non_persistent_buffers", set())
        set_field(self, "_modules", {})
        set_field(self, "_forward_pre_hooks", [])
        set_field(self, "_forward_hooks", [])

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, ...), the computation it performs")

    def __call__(self, *args, **kwargs):
        if not self._forward_pre_hooks and not self._forward_hooks:  # the common case: no hook machinery at all
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks):
            replaced = hook(self, args)
            if replaced is not None:
                args = replaced if isinstance(replaced, tuple) else (replaced,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks):
            replaced = hook(self, args, output)
            if replaced is not None:
                output = replaced
        return output

    # -- registration --------------------------------------------------------------------
    def __setattr__(self, name, value):
        changes[0] += 1
        parameters = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if parameters is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, keep=parameters)
            parameters[name] = value
        elif parameters is not None and name in parameters:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(distrain.nn.Parameter or None expected)")
            parameters[name] = None
        elif isinstance(value, Module):
            if parameters is None:
                raise AttributeError("cannot assign a submodule before Module.__init__() call")
            self._forget(name, keep=self._modules)
            self._modules[name] = value
        elif parameters is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(distrain.nn.Module or None expected)")
            self._modules[name] = None
        elif parameters is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        """Remove `name` from every registry but `keep` (a replacement stays in its slot, so a
        Sequential keeps its order and parameters() its order when a layer is swapped)."""
        for registry in (self.__dict__, self._parameters, self._buffers, self._modules):
            if registry is not keep:
                registry.pop(name, None)
        if keep is not self._buffers:
            self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        # only reached when normal lookup fails: the registries
        registries = self.__dict__
        for registry_name in ("_parameters", "_buffers", "_modules"):
            registry = registries.get(registry_name)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        changes[0] += 1
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    def register_parameter(self, name, param):
        """Register `param` (a Parameter, or None for an optional one such as a missing bias)."""
        _check_name(self, name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register '{type(param).__name__}' as parameter '{name}' "
                            "(distrain.nn.Parameter or None expected)")
        changes[0] += 1
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register state that is not trained but belongs to the module (BatchNorm's running stats).

        Buffers move with `to()` and, when persistent, are saved in `state_dict()`.
        """
        _check_name(self, name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot register '{type(tensor).__name__}' as buffer '{name}' (Tensor or None expected)")
        changes[0] += 1
        self._forget(name, keep=self._buffers)
        self._non_persistent_buffers.discard(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        _check_name(self, name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a distrain.nn.Module subclass")
        changes[0] += 1
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        module = self
        for part in target.split(".") if target else ():
            if part not in module._modules:
                raise AttributeError(f"{type(module).__name__} has no submodule '{part}' (looking up '{target}')")
            module = module._modules[part]
        return module

    def get_parameter(self, target):
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if name not in module._parameters:
            raise AttributeError(f"{type(module).__name__} has no parameter '{name}' (looking up '{target}')")
        return module._parameters[name]

    # -- traversal -----------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry_name, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, member in getattr(module, registry_name).items():
                if member is None or (remove_duplicate and id(member) in seen):
                    continue
                seen.add(id(member))
                yield (f"{module_prefix}.{name}" if module_prefix else name), member

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) for every parameter, each shared parameter once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, parameter in self.named_parameters(recurse=recurse):
            yield parameter

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn):
        """Call fn(module) on every submodule (children first) and on self, e.g. for custom init."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- modes and gradients -------------------------------------------------------------
    def train(self, mode=True):
        """Training mode (Dropout drops, BatchNorm uses and updates batch statistics); returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        changes[0] += 1
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter, e.g. a pretrained backbone; returns self."""
        for parameter in self.parameters():
            parameter.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset parameter gradients: to None (default; skipped by optimizers) or to zero in place."""
        for parameter in self.parameters():
            parameter._reset_grad(set_to_none)

    def pack_parameters(self):
        """Pack this module's parameters into flat buffers (engine/flat.py); returns the buffers."""
        from ..flat import pack_parameters

        return pack_parameters(self.parameters())

    def share_memory(self):
        """Move every parameter and buffer into shared memory (cpu only), for Hogwild-style
        training; returns self.

        Parameters are packed into flat buffers that live in shared memory, so a model sent to
        other processes (`distrain.multiprocessing.Process(args=(model,))`) is updated in place
        by an optimizer created in each of them; gradients stay private to each process.
        See NOTE [ Shared tensors between processes ] in engine/shared_memory.py.
        """
        from ..flat import pack_parameters
        from ..shared_memory import share_tensor

        for name, tensor in [*self.named_parameters(), *self.named_buffers()]:
            if type(tensor._data) is not numpy.ndarray:
                raise DeviceError(f"share_memory() works on cpu modules; {name} is on {tensor.device}. "
                                  "Call .cpu() first, or train on the GPU with DistributedDataParallel")
        pack_parameters(parameter for parameter in self.parameters() if parameter._flat is None)
        for tensor in [*self.parameters(), *self.buffers()]:
            share_tensor(tensor)
        return self

    # -- moving ----------------------------------------------------------------------------
    def _apply_to_arrays(self, convert):
        """Replace every parameter's and buffer's array by convert(array), keeping the objects.

        Parameters stay the same Python objects, so an optimizer created earlier keeps
        working; a parameter whose array changes leaves its flat buffer.
        """
        for module in self.modules():
            for parameter in module._parameters.values():
                if parameter is None:
                    continue
                new = convert(parameter._data)
                if new is parameter._data:
                    continue
                flat = parameter.__dict__.get("_flat")
                if flat is not None:
                    flat.release(parameter)
                parameter._data = new
                if parameter._grad is not None:
                    parameter._grad = _make(convert(parameter._grad._data))
            for buffer in module._buffers.values():
                if buffer is not None:
                    buffer._data = convert(buffer._data)
        return self

    def to(self, *args, **kwargs):
        """Move and/or cast parameters and buffers: `to("cuda:0")`, `to(distrain.float64)`, `to(device, dtype)`.

        Only floating-point parameters and buffers change dtype (num_batches_tracked stays int64).
        """
        from ..ops.convert import _parse_to_args

        device, dtype, _ = _parse_to_args(args, kwargs)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")

        def convert(array):
            out = array
            if device is not None and backend.device_of(out) is not device:
                out = backend.move_array(out, device)
            if dtype is not None and out.dtype.kind == "f" and out.dtype != dtype:
                out = out.astype(dtype)
            return out

        return self._apply_to_arrays(convert)

    def cpu(self):
        return self.to(backend.CPU)

    def cuda(self, device=None):
        return self.to(backend.Device("cuda", device) if isinstance(device, int) else backend.Device(device or "cuda"))

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    # -- state_dict ----------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Every parameter and persistent buffer by dotted name, sharing storage with the module."""
        if destination is None:
            destination = OrderedDict()
        for name, parameter in self._parameters.items():
            if parameter is not None:
                destination[prefix + name] = parameter if keep_vars else parameter.detach()
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = buffer if keep_vars else buffer.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=f"{prefix}{name}.", keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy values from `state_dict` into this module's parameters and buffers, in place.

        With strict=True every key must match; shapes must always match. On a problem
        nothing is changed and the error lists every missing, unexpected and mismatched key.
        Returns (missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict expects a dict of name -> tensor, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        mismatched = []
        for key, target in own.items():
            if key in state_dict:
                value = state_dict[key]
                shape = tuple(getattr(value, "shape", ()))
                if shape != tuple(target.shape):
                    mismatched.append(f"{key}: checkpoint {shape}, model {tuple(target.shape)}")
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(repr(k) for k in missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(repr(k) for k in unexpected))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if problems:
            raise StateDictError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n  " + "\n  ".join(problems)
                + ("\nPass strict=False to load only the matching keys." if strict and (missing or unexpected) else "")
            )
        with no_grad():
            for key, target in own.items():
                if key not in state_dict:
                    continue
                value = state_dict[key]
                array = value._data if isinstance(value, Tensor) else value
                array = backend.move_array(backend.array_module(target._data).asarray(array)
                                           if not isinstance(value, Tensor) else array, target.device)
                if assign and not isinstance(target, Parameter):
                    target._data = array.astype(target._data.dtype, copy=True)
                else:
                    target._data[...] = array
                target._version_counter[0] += 1
        return IncompatibleKeys(missing, unexpected)

    # -- hooks -----------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook):
        """hook(module, args) runs before forward; a returned value replaces the args."""
        changes[0] += 1
        self._forward_pre_hooks.append(hook)
        return _ModuleHookHandle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        """hook(module, args, output) runs after forward; a returned value replaces the output."""
        changes[0] += 1
        self._forward_hooks.append(hook)
        return _ModuleHookHandle(self._forward_hooks, hook)

    # -- printing --------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (layers give their sizes)."""
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _check_name(module, name, kind):
    if "_parameters" not in module.__dict__:
        raise AttributeError(f"cannot register a {kind} before Module.__init__() call")
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if not name or "." in name:
        raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")
    if name in module.__dict__ and name not in module._parameters and name not in module._buffers \
            and name not in module._modules:
        raise KeyError(f"attribute '{name}' already exists")
