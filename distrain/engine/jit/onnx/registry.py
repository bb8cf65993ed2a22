"""The converter tables: which distrain op function or layer becomes which ONNX nodes.

A function converter is `converter(builder, out, **arguments)`: `out` is what the eager op
returned, `arguments` are the op's own arguments by their names (defaults filled in), and it
returns the ONNX value name(s) of `out`, in `out`'s structure (a name per tensor, None for None).
It is keyed by the op function itself, so `distrain.relu`, `Tensor.relu` and
`nn.functional.relu` (one function under three names) share it.

A layer converter is `converter(builder, out, module, *args, **kwargs)` with the layer's call
arguments. Most layers are one op with the layer's options (`functional_layer`); the
recurrent and attention layers have converters of their own. `differs_in_training(module)`
says whether the layer does something else in training mode (dropout masks, batch
statistics): such a layer in training mode is refused before it runs (see export.py).
"""
from __future__ import annotations

import functools
import inspect

FUNCTIONS = {}  # op function -> converter
MODULES = {}  # layer class -> (converter, differs_in_training)


def converts(*functions):
    def register(converter):
        for function in functions:
            FUNCTIONS[function] = converter
        return converter

    return register


def converts_layer(*classes, differs_in_training=None):
    def register(converter):
        for cls in classes:
            MODULES[cls] = (converter, differs_in_training)
        return converter

    return register


@functools.lru_cache(maxsize=None)
def signature(function):
    return inspect.signature(function)


def arguments(function, args, kwargs):
    """`function`'s arguments by name, defaults filled in (varargs as a tuple, as the function sees them)."""
    bound = signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def convert_call(builder, out, function, *args, **kwargs):
    """Convert the call `function(*args, **kwargs)` that returned `out`, with `function`'s converter."""
    return FUNCTIONS[function](builder, out, **arguments(function, args, kwargs))


def functional_layer(call, *classes, differs_in_training=None):
    """Register layers that are one op: `call(module, input)` -> (op function, args, kwargs)."""

    def converter(builder, out, module, *args, **kwargs):
        function, op_args, op_kwargs = call(module, *args, **kwargs)
        return convert_call(builder, out, function, *op_args, **op_kwargs)

    converts_layer(*classes, differs_in_training=differs_in_training)(converter)


def layer_entry(module):
    """(converter, differs_in_training) for `module`, or None.

    A subclass inherits its base's converter only while it keeps the base's forward: a
    subclass that rewrote forward is recorded op by op like any user module.
    """
    cls = type(module)
    for base in cls.__mro__:
        entry = MODULES.get(base)
        if entry is not None:
            return entry if cls.forward is base.forward else None
    return None
