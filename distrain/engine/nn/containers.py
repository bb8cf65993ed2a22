"""Containers: Sequential, ModuleList, ModuleDict — modules that hold other modules."""
from __future__ import annotations

from collections import OrderedDict

from . import relu_pool_fusion
from .module import Module


class _NumberedModules(Module):
    """What Sequential and ModuleList share: children named "0", "1", ... kept in order."""

    def _index(self, index):
        count = len(self._modules)
        if not -count <= index < count:
            raise IndexError(f"index {index} is out of range for a {type(self).__name__} of length {count}")
        return index % count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(list(self._modules.values())[index])
        return list(self._modules.values())[self._index(index)]

    def __setitem__(self, index, module):
        self.add_module(list(self._modules)[self._index(index)], module)

    def __delitem__(self, index):
        keys = list(self._modules)
        for key in (keys[index] if isinstance(index, slice) else [keys[self._index(index)]]):
            del self._modules[key]
        if all(key.isdigit() for key in keys):  # renumber 0..n-1, as PyTorch does
            self._modules = {str(i): module for i, module in enumerate(self._modules.values())}

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        modules = list(self._modules.values())
        modules.insert(index if index >= 0 else len(modules) + index, module)
        self._modules = {}
        return self.extend(modules)


class Sequential(_NumberedModules):
    """Run modules one after another: Sequential(Linear(4, 8), ReLU(), Linear(8, 2)).

    Also built from an OrderedDict of names to modules, which names the children.
    Supports len(), indexing (an int gives a module, a slice a new Sequential), iteration,
    append/insert/extend. A ReLU followed by a MaxPool2d runs as the max-pool first, where
    nothing can tell the difference (NOTE [ ReLU after max-pool ], relu_pool_fusion.py).
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            if len(modules) == 1 and isinstance(modules[0], list):  # a slice of another Sequential
                modules = modules[0]
            for index, module in enumerate(modules):
                if not isinstance(module, Module):
                    raise TypeError(f"Sequential: argument {index} is a {type(module).__name__}, not a Module "
                                    "(did you forget the parentheses, e.g. nn.ReLU() rather than nn.ReLU?)")
                self.add_module(str(index), module)

    def __getitem__(self, index):
        if isinstance(index, slice):  # keeps the children's names, as PyTorch does
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def forward(self, input):
        modules = list(self._modules.values())
        previous, index = None, 0
        while index < len(modules):
            module = modules[index]
            if index + 1 < len(modules) and relu_pool_fusion.fuses(module, modules[index + 1], previous):
                # ReLU then MaxPool2d run as max-pool first: NOTE [ ReLU after max-pool ] (relu_pool_fusion.py)
                input = relu_pool_fusion.pool_then_relu(module, modules[index + 1], input)
                previous, index = modules[index + 1], index + 2
                continue
            input = module(input)
            previous, index = module, index + 1
        return input


class ModuleList(_NumberedModules):
    """A list of modules whose parameters the parent sees (a plain list would hide them)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __iadd__(self, modules):
        return self.extend(modules)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(): iterate over it in your module's forward")


class ModuleDict(Module):
    """A dict of modules by name whose parameters the parent sees."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()

    def update(self, modules):
        for key, module in (modules.items() if hasattr(modules, "items") else modules):
            self[key] = module

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(): look modules up by name in your module's forward")
