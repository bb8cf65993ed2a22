"""Where in the user's code a capture event happened, for error messages and `explain`.

A capture error is only useful if it points at the line to change: the innermost frame
outside the capture machinery and the array libraries (often inside a distrain layer or
op), and the first frame outside distrain (the user's model or step function).
"""
from __future__ import annotations

import linecache
import os
import sys

import numpy

_DISTRAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_JIT = os.path.dirname(os.path.abspath(__file__))
# frames that only pass a value along (a Tensor's __bool__ asking its array): never "the place"
_CONDUITS = (_JIT, os.path.join(os.path.dirname(_JIT), "tensor.py"))
_LIBRARIES = tuple(os.path.dirname(os.path.abspath(module.__file__)) + os.sep for module in (numpy,))


def _describe(frame):
    filename, line = frame.f_code.co_filename, frame.f_lineno
    source = linecache.getline(filename, line).strip()
    shown = os.path.relpath(filename) if not filename.startswith("<") else filename
    if shown.startswith(".." + os.sep + ".."):
        shown = filename
    return f"{shown}:{line} in {frame.f_code.co_name}" + (f": `{source}`" if source else "")


def user_location(skip=1) -> str:
    """'file:line in function: `source`' of the code that caused the event (see the module docstring)."""
    frame = sys._getframe(skip)
    innermost = None
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_CONDUITS) and not filename.startswith(_LIBRARIES) and innermost is None:
            innermost = frame
        if not filename.startswith(_DISTRAIN + os.sep) and not filename.startswith(_LIBRARIES) \
                and not filename.startswith("<frozen"):
            if innermost is frame or innermost is None:
                return _describe(frame)
            return f"{_describe(innermost)}, called from {_describe(frame)}"
        frame = frame.f_back
    return _describe(innermost) if innermost is not None else "an unknown place"
