"""Compiled kernels for the memory-bound passes around the GEMMs, each with a NumPy reference.

NOTE [ Compiled kernels ]
Some passes of a training step (max-pool forward and backward, ReLU backward) touch
every element once or a few times and do almost no arithmetic: NumPy runs them as
several whole-array passes with temporaries (~21-24 GB/s on the CI machine), a
compiled loop in one pass (~80-90 GB/s). Each kernel here is one public entry function
with two implementations that give bit-identical results:
  - a compiled loop (numba: `@njit(cache=True, error_model="numpy")`, serial: a parallel
    kernel's threads fight OpenBLAS's next to it), for NumPy arrays;
  - a reference written with the array module `xp` (NumPy's whole-array passes): what
    runs without numba, what the tests compare the compiled loop against, and the CuPy
    path (untested here: no GPU on the CI machine).

Which one runs is chosen once per process, by the environment variable DISTRAIN_KERNELS:
    auto   (default)  numba when it can be imported, else numpy
    numba             numba, or an error saying how to install it
    numpy             the reference path always
`distrain.engine.kernels.active()` says which path this process uses ("numba" or
"numpy"). numba is imported on the first kernel call (or the first `active()`), never at
`import distrain`; the compiled loops are cached on disk (numba's __pycache__), so only
the first process after an install or an upgrade pays the compile time.

Static capture (distrain.jit): a compiled loop cannot take a TracedArray, so an entry
function called with traced arrays hands itself to the recorder (`handed_to_recorder`),
which calls it again on the concrete arrays and records that one call; a replay calls
the entry function again, and a saved graph names it (distrain.engine.kernels is on
the allow-list of distrain/engine/jit/portable_names.py). Entry functions therefore
return new arrays and never write into their arguments; the optimizers' kernels (adam.py,
sgd.py) are the exception: they update in place, inside `Optimizer.step`, which never runs
under capture.
"""
from __future__ import annotations

import importlib
import os

from ...errors import ArgumentError
from ..capture_state import active as _capturing

CHOICES = ("auto", "numba", "numpy")
_INSTALL_HINT = 'pip install "numba>=0.59" (or pip install "distrain[fast]")'
_path = None  # "numba" or "numpy", once chosen


def active():
    """The kernel path of this process: "numba" (compiled loops) or "numpy" (the reference), chosen once."""
    global _path
    if _path is None:
        _path = _choose(os.environ.get("DISTRAIN_KERNELS", "auto").strip().lower() or "auto")
    return _path


def _choose(choice):
    if choice not in CHOICES:
        raise ArgumentError(f"DISTRAIN_KERNELS={choice!r} is not a kernel path; use one of {', '.join(CHOICES)} "
                            "(auto: numba when installed, else numpy)")
    if choice == "numpy":
        return "numpy"
    try:
        import numba  # noqa: F401  (the one place numba is imported besides the loop modules)
    except ImportError as exc:
        if choice == "numba":
            raise ArgumentError(f"DISTRAIN_KERNELS=numba but numba cannot be imported ({exc}); install it with "
                                f"{_INSTALL_HINT}, or set DISTRAIN_KERNELS=numpy") from None
        return "numpy"
    return "numba"


def compiled_loops(module_name, *arrays):
    """The module of numba loops `distrain.engine.kernels.<module_name>` when they apply to `arrays`, else None.

    They apply on the numba path to NumPy arrays only (CuPy arrays take the reference).
    """
    if active() != "numba" or any(type(array).__module__ != "numpy" for array in arrays):
        return None
    return importlib.import_module(f"{__name__}.{module_name}")


def handed_to_recorder(entry, args):
    """(True, result) when a capture is running and an argument is traced: the recorder ran `entry(*args)`.

    See NOTE [ Compiled kernels ]: the recorder calls `entry` again with concrete arrays
    and records that call, so the kernel is one instruction of the graph.
    """
    recorder = _capturing()
    if recorder is not None and any(hasattr(arg, "concrete") for arg in args):
        return True, recorder.call(entry, args, {})
    return False, None


__all__ = ["CHOICES", "active", "compiled_loops", "handed_to_recorder"]
