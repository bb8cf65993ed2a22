"""Callables by importable name, and back, inside an allow-list: a saved graph is data, never code.

NOTE [ Names a saved graph may use ]
A saved graph names every function it calls ("numpy.matmul", "numpy.add.reduce",
"operator.iadd", "distrain.engine.ops.value_checks.check_range") and every class it
passes ("distrain.errors.ShapeError", "numpy.float64"). Loading turns those names back
into objects, and that is the one place where a file could make this process run code
it chose (the reason pickle is not used). So a name resolves only when:
  - it is a plain dotted path of public names (no component starts with "_": no
    `__globals__`, `__builtins__`, `__class__` walks) through modules only (and a ufunc's
    method: numpy.add.reduce), under one of ALLOWED_MODULES;
  - every module met on the way is itself under ALLOWED_MODULES (numpy.lib.npyio.os is
    the os module: refused), and none is in REFUSED (file I/O, library loading, code
    generation, callables that call what they are given);
  - the object found is of the kind the place allows: for a call, a ufunc or ufunc
    method, or a function whose home module is allowed (distrain's own functions only
    from distrain.engine.ops, where the checks a graph runs live); for an argument, also
    an exception class or a NumPy scalar type; for the optimizer, a distrain optimizer class.
Anything else raises SerializationError before the name's module is imported. Saving
applies the same rules (`portable_name` checks that its name resolves to the very object),
so every graph that saves also loads. Calls that are safe only with sane arguments are
replaced at load by checked versions (checked_calls.py).
"""
from __future__ import annotations

import importlib
import re
import sys
import types

import numpy

from .errors import SerializationError

# distrain's part: the engine (ops, optimizers, their errors) and its error classes, not launchers or communicators
ALLOWED_MODULES = ("numpy", "operator", "math", "cupy", "scipy.special", "distrain.engine", "distrain.errors")
DISTRAIN_FUNCTIONS = ("distrain.engine.ops", "distrain.engine.kernels")  # distrain functions a graph may call live here
REFUSED = (
    # reading, writing or mapping files, loading libraries, compiling code
    "numpy.load", "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.savetxt", "numpy.loadtxt",
    "numpy.genfromtxt", "numpy.fromfile", "numpy.fromregex", "numpy.memmap", "numpy.DataSource", "numpy.lib.npyio",
    "numpy.lib.format", "numpy.lib.utils", "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing",
    "numpy.show_config", "numpy.show_runtime", "numpy.info", "numpy.lookfor", "numpy.source", "numpy.set_printoptions",
    "numpy.seterrcall", "numpy.setbufsize", "numpy.rec", "numpy.ma",  # record/masked arrays: file readers, pickle
    "cupy.load", "cupy.save", "cupy.savez", "cupy.savez_compressed", "cupy.fromfile", "cupy.loadtxt", "cupy.savetxt",
    "cupy.genfromtxt",
    # calling the Python callables they are given
    "numpy.frompyfunc", "numpy.vectorize", "numpy.fromfunction", "numpy.apply_along_axis", "numpy.apply_over_axes",
    "numpy.piecewise",
    "operator.call", "operator.attrgetter", "operator.methodcaller", "operator.itemgetter",
    "cupy.fuse", "cupy.RawKernel", "cupy.RawModule", "cupy.ElementwiseKernel", "cupy.ReductionKernel", "cupy.cuda",
    "cupy.memoize", "cupy.testing",
)
UFUNC_METHODS = frozenset({"reduce", "accumulate", "at", "outer", "reduceat"})
BUILTIN_TYPES = {"builtins.float": float, "builtins.int": int, "builtins.bool": bool, "builtins.complex": complex}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
_MAX_NAME = 300
_HOME_ALIASES = {"_operator": "operator"}
_ALLOWED_RULES = (f"a saved graph may name only public functions and classes of {', '.join(ALLOWED_MODULES)} "
                  "(see NOTE [ Names a saved graph may use ] in distrain/engine/jit/portable_names.py)")


def _under(name, prefixes):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _home(obj):
    home = getattr(obj, "__module__", None) or type(obj).__module__
    return _HOME_ALIASES.get(home, home)


def _is_ufunc(obj):
    return isinstance(obj, numpy.ufunc) or (type(obj).__module__.startswith("cupy") and hasattr(obj, "nin")
                                            and hasattr(obj, "reduce"))


def _kind_error(name, problem):
    return SerializationError(f"distrain.jit: a saved graph names {name!r}, which {problem}; {_ALLOWED_RULES}. "
                              "The file was not written by distrain.jit's save (or was changed): do not load it.")


def _walk(name):
    """The object `name` names, importing only allowed modules (see the NOTE above)."""
    if type(name) is not str or len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise _kind_error(str(name)[:80], "is not a dotted path of public names")
    if not _under(name, ALLOWED_MODULES):
        raise _kind_error(name, "lies outside the allowed modules")
    if _under(name, REFUSED):
        raise _kind_error(name, "reads or writes files, loads code or calls what it is given")
    parts = name.split(".")
    start = next(len(prefix.split(".")) for prefix in ALLOWED_MODULES if _under(name, (prefix,)))
    obj = _import(".".join(parts[:start]), name)
    for index in range(start, len(parts)):
        part = parts[index]
        if not isinstance(obj, types.ModuleType) and not (_is_ufunc(obj) and part in UFUNC_METHODS):
            raise _kind_error(name, f"goes through {'.'.join(parts[:index])}, a {type(obj).__name__}: a name is a "
                                    "module's attribute (or a ufunc's method)")
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif isinstance(obj, types.ModuleType):
            obj = _import(f"{obj.__name__}.{part}", name)
        else:  # a ufunc without that method (cupy's have fewer)
            raise SerializationError(f"distrain.jit: a saved graph names {name!r}, but {'.'.join(parts[:index])} has "
                                     f"no {part!r} in this installation (a different numpy/distrain version?); load "
                                     "it with the versions it was saved with, or save the graph again here")
        if isinstance(obj, types.ModuleType):
            _check_module(obj.__name__, name)
    return obj


def _check_module(module_name, name):
    if not _under(module_name, ALLOWED_MODULES) or _under(module_name, REFUSED):
        raise _kind_error(name, f"goes through module {module_name}, which is not allowed")


def _import(module_name, name):
    _check_module(module_name, name)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise SerializationError(f"distrain.jit: a saved graph names {name!r}, but module {module_name} cannot be "
                                 f"imported here ({type(exc).__name__}: {exc}); install it (a graph captured on a GPU "
                                 "calls cupy), or load the graph where it was saved") from None


def _refused_object(obj):
    """True for an allowed-looking alias of a refused function (numpy.lib._npyio_impl.load is numpy.load)."""
    home = _home(obj)
    if _under(home, REFUSED):
        return True
    for name in REFUSED:
        module_name, _, attribute = name.rpartition(".")
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attribute, None) is obj:
            return True
    return False


def _is_op(obj):
    if _is_ufunc(obj):
        return True
    owner = getattr(obj, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType):  # a bound method: only a ufunc's own
        return _is_ufunc(owner) and getattr(obj, "__name__", "") in UFUNC_METHODS
    if isinstance(obj, (type, types.ModuleType)) or not callable(obj):
        return False
    home = _home(obj)
    return _under(home, DISTRAIN_FUNCTIONS) if _under(home, ("distrain",)) else _under(home, ALLOWED_MODULES)


def _is_value_class(obj):
    return isinstance(obj, type) and _under(_home(obj), ALLOWED_MODULES + ("builtins",)) and (
        issubclass(obj, BaseException) or issubclass(obj, numpy.generic))


def resolve(name, kind="call", base=None):
    """The object a saved graph names, checked for `kind` (see the NOTE above).

    kind: "call" (an instruction's function), "value" (a function or class passed as an
    argument), "class" (a subclass of `base`, e.g. the optimizer's class).
    """
    if kind == "value" and name in BUILTIN_TYPES:
        return BUILTIN_TYPES[name]
    obj = _walk(name)
    if _refused_object(obj):
        raise _kind_error(name, "reads or writes files, loads code or calls what it is given")
    if kind == "call" and _is_op(obj):
        return obj
    if kind == "value" and (_is_op(obj) or _is_value_class(obj)):
        return obj
    if kind == "class" and isinstance(obj, type) and issubclass(obj, base) and _under(_home(obj), ALLOWED_MODULES):
        return obj
    wanted = {"call": "an array function", "value": "an array function, exception class or NumPy type",
              "class": f"a subclass of {getattr(base, '__name__', base)}"}[kind]
    raise _kind_error(name, f"is a {type(obj).__name__}, not {wanted}")


def _same(found, obj):
    if found is obj:
        return True
    owner = getattr(obj, "__self__", None)  # ufunc methods are new bound objects at every access
    return owner is not None and getattr(found, "__self__", None) is owner and \
        getattr(found, "__name__", None) == getattr(obj, "__name__", None)


def _candidates(obj):
    owner = getattr(obj, "__self__", None)
    if owner is not None and _is_ufunc(owner):
        for owner_name in _candidates(owner):
            yield f"{owner_name}.{obj.__name__}"
        return
    for name, builtin in BUILTIN_TYPES.items():
        if obj is builtin:
            yield name
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(qualname, str):
        return
    home = _home(obj) or ""
    yield f"{home}.{qualname}"
    public = ".".join(part[1:].removesuffix("_impl") if part.startswith("_") else part for part in home.split("."))
    yield f"{public}.{qualname}"
    for package in ("numpy", "cupy", "scipy.special"):  # the public alias of numpy._core...., cupy._core....
        if _under(home, (package.split(".")[0],)):
            yield f"{package}.{qualname}"


def portable_name(obj, what):
    """The allowed, importable name of `obj` (what `resolve` turns back into it), or SerializationError.

    `what` says where the object is used, for the error ("numpy.matmul at model.py:12").
    """
    for kind in ("call", "value"):
        for name in _candidates(obj):
            try:
                if _same(resolve(name, kind), obj):
                    return name
            except SerializationError:
                continue
    shown = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    raise SerializationError(
        f"distrain.jit: cannot save {what}: {shown!s:.80} (from module {_home(obj)}) has no importable name that "
        f"a loading process may use; {_ALLOWED_RULES}. Compute that part with distrain ops (no lambdas, no "
        "numpy.frompyfunc, no functions of your own inside the captured code), or keep it out of the saved graph.")


def portable_class_name(cls, base, what):
    """The allowed name of class `cls` (a subclass of `base`), or SerializationError naming `what`."""
    name = f"{_home(cls)}.{cls.__qualname__}"
    try:
        if resolve(name, "class", base) is cls:
            return name
    except SerializationError:
        pass
    raise SerializationError(
        f"distrain.jit: cannot save {what}: class {cls.__qualname__} from module {cls.__module__} cannot be "
        f"restored by a process without your code; {_ALLOWED_RULES}. Use one of distrain's own classes.")
