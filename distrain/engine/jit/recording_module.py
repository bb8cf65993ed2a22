"""A recording stand-in for numpy or cupy, handed to ops as `xp` while a capture runs.

Ops compute with `xp = array_module(tensor._data)`. For a TracedArray that module is a
`RecordingModule`: its functions and ufuncs record the call (recorder.py) and compute on
the concrete arrays. Going through the module rather than NumPy's dispatch protocols
matters for calls without a traced argument — `xp.zeros(shape)`, `xp.ones_like(...)`,
`xp.asarray(constant)` inside an op — which are then replayed (a fresh zero buffer every
replay) instead of being frozen as the capture's arrays. Classes (`xp.ndarray`,
`xp.errstate`, `xp.dtype`) and plain values (`xp.float32`, `xp.pi`) pass through.
"""
from __future__ import annotations

import types


class RecordingModule:
    """numpy/cupy (or a submodule of it) with every function recorded (see the module docstring)."""

    def __init__(self, module, recorder):
        self._module = module
        self._recorder = recorder
        self.wrapped_module = module  # backend.is_numpy(xp) reads it

    def __getattr__(self, name):
        attribute = getattr(self._module, name)
        if isinstance(attribute, types.ModuleType):
            proxy = RecordingModule(attribute, self._recorder)
        elif hasattr(attribute, "nin") and hasattr(attribute, "reduce"):
            proxy = RecordingUfunc(attribute, self._recorder)
        elif callable(attribute) and not isinstance(attribute, type):
            proxy = RecordingFunction(attribute, self._recorder)
        else:
            proxy = attribute
        self.__dict__[name] = proxy  # the next lookup is a plain attribute read
        return proxy

    def __repr__(self):
        return f"<recording {self._module.__name__}>"


class RecordingFunction:
    __slots__ = ("function", "recorder", "__name__")

    def __init__(self, function, recorder):
        self.function = function
        self.recorder = recorder
        self.__name__ = getattr(function, "__name__", "function")

    def __call__(self, *args, **kwargs):
        return self.recorder.call(self.function, args, kwargs)


class RecordingUfunc:
    """A ufunc whose call and methods (reduce, accumulate, at, outer, reduceat) are recorded."""

    def __init__(self, ufunc, recorder):
        self.ufunc = ufunc
        self.recorder = recorder

    def __call__(self, *args, **kwargs):
        return self.recorder.call(self.ufunc, args, kwargs)

    def reduce(self, *args, **kwargs):
        return self.recorder.call(self.ufunc.reduce, args, kwargs)

    def accumulate(self, *args, **kwargs):
        return self.recorder.call(self.ufunc.accumulate, args, kwargs)

    def at(self, *args, **kwargs):
        return self.recorder.call(self.ufunc.at, args, kwargs)

    def outer(self, *args, **kwargs):
        return self.recorder.call(self.ufunc.outer, args, kwargs)

    def reduceat(self, *args, **kwargs):
        return self.recorder.call(self.ufunc.reduceat, args, kwargs)

    def __getattr__(self, name):
        return getattr(self.ufunc, name)
