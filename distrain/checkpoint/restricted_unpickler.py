"""Reading a pickle without running its code: only globals from an allow-list are ever called.

A pickle is a program: its GLOBAL opcode imports any name (`os.system`, `builtins.eval`) and
REDUCE calls it. Python's Unpickler resolves every name through `find_class` (GLOBAL,
STACK_GLOBAL, INST, the extension registry), so a `find_class` that answers from a table and
refuses the rest decides what a file can call. This is the rule of PyTorch's own
`weights_only=True`: tensor-rebuild functions, storage types, dtypes and plain containers.

NOTE [ Nothing a pickle touches is ours to change ]
Allowing a name is not enough: pickle's BUILD opcode sets state on whatever object is on its
stack (`__setstate__`, `__dict__` entries, `setattr` of slots). Handing out a real class, a
function or a shared object (a NumPy dtype, an interned `distrain.device`) would let a file
change it for the whole process, e.g. give float32 another byte order. So the table's entries
are `AllowedCall` wrappers (tuples: BUILD cannot change them, NEWOBJ refuses them, calling
them calls only the function they wrap), and what those functions return is either immutable
(str, tuple, bytes, complex, frozenset) or a fresh object of this one load (dicts, sets,
tensors), which a forged BUILD can at most fill with data.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import pickletools

from .format import error


class AllowedCall(tuple):
    """An allowed global as the pickle sees it: calling it calls the wrapped function, nothing
    else about it can be changed (see NOTE [ Nothing a pickle touches is ours to change ])."""

    __slots__ = ()

    def __new__(cls, function, qualified_name):
        return super().__new__(cls, (function, qualified_name))

    def __call__(self, *args):
        return self[0](*args)

    def __repr__(self):
        return f"<allowed global {self[1]}>"


def _latin1_bytes(text, encoding="latin1"):
    """`_codecs.encode`, which protocol-2 pickles use to carry bytes, for that use only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise TypeError(f"_codecs.encode is allowed only as pickle uses it for bytes, (str, 'latin1'), "
                        f"not ({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _bytearray(data=b"", encoding=None):
    """`bytearray` as pickle uses it: from bytes or a latin-1 string, never from a length to allocate."""
    if isinstance(data, str):
        return bytearray(data.encode(encoding or "latin1"))
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"bytearray is allowed only from bytes or str, not {type(data).__name__}")
    return bytearray(data)


PLAIN_GLOBALS = {
    "collections.OrderedDict": collections.OrderedDict,
    "collections.Counter": collections.Counter,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.complex": complex,
    "builtins.bytearray": _bytearray,
    "_codecs.encode": _latin1_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler whose `find_class` answers only from `allowed` (name -> function) and
    whose persistent ids (where PyTorch puts its storages) go to `persistent_load`.

    Anything else is refused with a CheckpointError that names the global and the file.
    """

    def __init__(self, file, name, allowed, persistent_load=None, unsupported=None):
        super().__init__(file, encoding="utf-8")
        self._name = name
        self._allowed = {key: AllowedCall(value, key) if callable(value) else value for key, value in allowed.items()}
        if not all(isinstance(value, (AllowedCall, str)) for value in self._allowed.values()):
            raise TypeError("allowed globals are functions or names (str): nothing a pickle could change")
        self._persistent_load = persistent_load
        self._unsupported = unsupported or {}

    def find_class(self, module, name):
        # A protocol-2 pickle written by Python 3 names builtins as Python 2 did (__builtin__.set);
        # no Python 3 module has those names, so the mapping applies whatever the protocol.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified_name = f"{module}.{name}"
        allowed = self._allowed.get(qualified_name)
        if qualified_name in self._unsupported:
            raise error(self._name, f"holds {self._unsupported[qualified_name]} ({qualified_name}), which distrain "
                                    "cannot represent; convert it to a plain dense tensor in PyTorch and save again")
        if allowed is None:
            raise error(self._name, f"was refused: loading it would import {qualified_name}, which is not among "
                                    "the tensor, storage, dtype and plain-container names distrain rebuilds (the "
                                    "rule of PyTorch's weights_only=True). distrain never runs code from a file and "
                                    "imported nothing from this one. "
                                    "If the file is yours and trusted, load it in PyTorch and save only tensors: "
                                    "torch.save(model.state_dict(), path)")
        return allowed

    def persistent_load(self, persistent_id):
        if self._persistent_load is None:
            raise error(self._name, "holds a persistent reference where none is expected; it is damaged or not a "
                                    "PyTorch file")
        return self._persistent_load(persistent_id)


def restricted_load(file, name, allowed=PLAIN_GLOBALS, persistent_load=None, unsupported=None):
    """The object pickled at `file`'s position (bytes, or a seekable binary file), unpickled by a
    RestrictedUnpickler after `check_opcodes`; any failure but a refusal becomes a CheckpointError."""
    if isinstance(file, (bytes, bytearray, memoryview)):
        file = io.BytesIO(file)
    check_opcodes(file, name)
    try:
        return RestrictedUnpickler(file, name, allowed, persistent_load, unsupported).load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, IndexError, KeyError, AttributeError,
            OverflowError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise error(name, f"is damaged or not a PyTorch file: its pickle cannot be read "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None


def check_opcodes(file, name):
    """Parse the pickle at `file`'s position without building anything, then seek back.

    NOTE [ A small pickle can ask for gigabytes ]
    CPython's C unpickler grows its memo table to the largest index a PUT names, zero-filled,
    and allocates the length a BINBYTES/BINUNICODE names before reading it: a damaged 600-byte
    file whose LONG_BINPUT says 1,275,750,499 makes it touch 20 GB. `pickletools.genops` only
    reads opcodes: a PUT index beyond the opcodes seen so far (the pickler numbers them from 0 as
    it goes), a length beyond the bytes present, or an unknown opcode is refused here first.
    """
    start = file.tell()
    try:
        for count, (opcode, argument, _) in enumerate(pickletools.genops(file)):
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= argument <= count:
                raise error(name, f"is damaged or not a PyTorch file: its pickle stores object {argument} after only "
                                  f"{count} opcodes")
    except (ValueError, EOFError, UnicodeDecodeError, MemoryError, OverflowError) as exc:
        raise error(name, f"is damaged or not a PyTorch file: its pickle cannot be read "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    file.seek(start)
