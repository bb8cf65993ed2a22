"""`Parameter`: a tensor that a Module owns as a learnable weight.

Assigning a Parameter to a Module attribute registers it (`module.parameters()` finds
it), which is the only thing that distinguishes it from a Tensor that requires grad. A
Parameter can live inside a flat parameter buffer (engine/flat.py): then its array is a
view of that buffer and its `.grad`, once backward has produced one, is a view of the
buffer's gradient twin.
"""
from __future__ import annotations

from ..tensor import Tensor, _make


class Parameter(Tensor):
    """A Tensor registered by Modules as a learnable weight (requires grad by default).

    Example::

        >>> w = distrain.nn.Parameter(distrain.randn(3, 4))
        >>> w.requires_grad
        True
    """

    # No __slots__: a Parameter has a __dict__ for its flat-buffer membership (_flat, _flat_grad).

    def __new__(cls, data=None, requires_grad=True):
        from ..factories import empty

        if data is None:
            data = empty(0)
        elif not isinstance(data, Tensor):
            raise TypeError(f"Parameter(data): data must be a Tensor, got {type(data).__name__}; "
                            "wrap arrays with distrain.tensor(...) first")
        parameter = object.__new__(cls)
        parameter._data = data._data
        parameter._grad = None
        parameter.grad_fn = None
        parameter._output_nr = 0
        parameter._version_counter = data._version_counter
        parameter._base = None
        parameter._hooks = None
        parameter._post_accumulate_hooks = None
        parameter._requires_grad = False
        parameter.requires_grad_(requires_grad)
        return parameter

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__ (Tensor.__new__ takes other arguments)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce__(self):
        rebuild, (array, device, requires_grad) = super().__reduce__()
        return (_rebuild_parameter, (array, device, requires_grad))

    def __deepcopy__(self, memo):
        copy = Parameter(_make(self._data.copy()), self._requires_grad)
        if self._grad is not None:
            copy._grad = self._grad.__deepcopy__(memo)
        memo[id(self)] = copy
        return copy

    @Tensor.data.setter
    def data(self, value):
        """`param.data = t` copies into a packed parameter's slot (keeping the buffer whole),
        and rebinds an unpacked one, as in PyTorch."""
        if not isinstance(value, Tensor):
            raise TypeError(f"parameter.data must be assigned a Tensor, got {type(value).__name__}")
        flat = self.__dict__.get("_flat")
        if flat is not None and value._data.shape == self._data.shape and type(value._data) is type(self._data) \
                and value._data.dtype == self._data.dtype:
            flat.array_module.copyto(self._data, value._data)
            self._version_counter[0] += 1
        else:
            if flat is not None:
                flat.release(self)
            self._data = value._data


def _rebuild_parameter(array, device, requires_grad):
    from ..tensor import _rebuild

    return Parameter(_rebuild(array, device, False), requires_grad)
