"""The passes between capture and code generation, each switchable (`passes=`).

See passes/ for each pass; `build_program` runs the chosen ones in a fixed order and
compiles the result.
"""
from __future__ import annotations

from .program import Program

ALL_PASSES = ()


def build_program(capture, passes=None):
    """The compiled replay of `capture` after the passes named in `passes` (None: all)."""
    return Program(capture)
