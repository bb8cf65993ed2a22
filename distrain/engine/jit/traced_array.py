"""`TracedArray`: what a tensor holds instead of its array while a function is being captured.

NOTE [ Capture at the array level ]
distrain's ops compute on NumPy/CuPy arrays (forward) and on Tensors whose arrays are
again computed with NumPy/CuPy (backward, optimizer rules). Capturing at that level
records exactly the array calls an eager step makes, in the same order, so a replay
is bit-identical to eager by construction, and it runs with no Tensor, no autograd node
and no Python op code in between: only the array calls.

During capture every input, parameter, gradient and buffer array is wrapped in a
TracedArray that holds the concrete array (the capture also computes, as eager does)
and the number of its slot in the graph. Every way of computing with it is recorded:
  - the array module: `array_module(traced)` gives a recording proxy of numpy/cupy
    (recording_module.py), so `xp.matmul(a, b)` or `xp.zeros(shape)` inside an op is
    recorded even when no argument is traced;
  - NumPy's own protocols, `__array_ufunc__` and `__array_function__`, for code that calls
    `numpy.*` directly;
  - Python operators, indexing, assignment into slices, attributes (`.T`) and methods
    (`.reshape`, `.sum`, `.astype`, `.fill`, ...).
What cannot be recorded raises a CaptureError naming the place: using a value in Python
(`bool`, `float`, `int`, `.item()`, `.tolist()`, printing), handing the array to code
that bypasses the protocols (`__array__`, the buffer protocol), or a result whose shape
depends on the values (`nonzero`, boolean-mask indexing).
"""
from __future__ import annotations

import operator

from .errors import CaptureError
from .locations import user_location

# ndarray methods that write into the array itself (their self argument is mutated)
MUTATING_METHODS = frozenset({"fill", "sort", "put", "partition", "itemset", "setfield", "resize", "byteswap",
                              "scatter_add", "scatter_max", "scatter_min"})  # (the last three: cupy.ndarray's)
# methods and functions whose result's shape depends on the values: a static graph cannot hold them
VALUE_SHAPED = frozenset({"nonzero", "argwhere", "flatnonzero", "unique", "extract", "compress", "trim_zeros",
                          "bincount", "setdiff1d", "intersect1d", "union1d", "setxor1d", "unique_values",
                          "unique_counts", "unique_inverse", "unique_all"})
# methods whose results are Python values (data leaves the graph)
ESCAPING_METHODS = frozenset({"item", "tolist", "tobytes", "tofile", "dump", "dumps", "__reduce__", "__reduce_ex__",
                              "get", "__dlpack__", "__getstate__", "__setstate__"})


class TracedArray:
    """A stand-in for an array during capture: the concrete value and its slot (see NOTE above)."""

    __slots__ = ("value", "slot", "recorder", "__weakref__")
    __array_priority__ = 1000  # NumPy asks this object first in mixed operations
    __hash__ = None  # like ndarray

    def __init__(self, value, slot, recorder):
        self.value = value
        self.slot = slot
        self.recorder = recorder

    # -- metadata: static for the graph (the guards check the inputs' metadata on every replay)
    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def ndim(self):
        return self.value.ndim

    @property
    def size(self):
        return self.value.size

    @property
    def itemsize(self):
        return self.value.itemsize

    @property
    def nbytes(self):
        return self.value.nbytes

    @property
    def strides(self):
        return self.value.strides

    @property
    def flags(self):
        return self.value.flags

    @property
    def base(self):
        """None when the array owns its memory, else a marker (the base itself is not handed out)."""
        return None if getattr(self.value, "base", None) is None else _VIEW_MARKER

    @property
    def device(self):
        return self.value.device

    @property
    def recording_module(self):
        """The array module to compute with: a recording proxy of numpy or cupy (backend.array_module)."""
        return self.recorder.module_for(self.value)

    @property
    def concrete(self):
        """The concrete array, for metadata only (addresses of views); computing with it escapes the graph."""
        return self.value

    def __len__(self):
        return len(self.value)

    def __repr__(self):
        return f"TracedArray(slot {self.slot}, shape={self.value.shape}, dtype={self.value.dtype})"

    __str__ = __repr__

    # -- the protocols of NumPy ----------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        target = ufunc if method == "__call__" else getattr(ufunc, method)
        return self.recorder.call(target, inputs, kwargs)

    def __array_function__(self, function, types, args, kwargs):
        return self.recorder.call(function, args, kwargs)

    def __array__(self, dtype=None, copy=None):
        raise self.escape("converted to a plain array (numpy.asarray / numpy.array or a library that needs one)")

    # -- Python values: data-dependent, refused ---------------------------------------------
    def escape(self, what):
        """The CaptureError for using this array's values in Python (see the module docstring)."""
        return CaptureError(
            f"distrain.jit: a tensor's values are {what} at {user_location(3)}, while a static graph is being "
            f"captured (array of shape {tuple(self.value.shape)}, {self.value.dtype}). The graph would keep the value "
            "of this one call, and every replay would silently reuse it (the lecture's tf.cond point). Compute "
            "with tensors instead (distrain.where(cond, a, b) for an if, a tensor instead of .item()), move this "
            "code out of the captured function, or run it eagerly.")

    def __bool__(self):
        raise self.escape("used as a Python truth value (an `if`, `while`, `and`/`or` or `assert` on a tensor)")

    def __float__(self):
        raise self.escape("converted to a Python float")

    def __int__(self):
        raise self.escape("converted to a Python int")

    def __index__(self):
        raise self.escape("used as a Python integer (an index, a size or a range bound)")

    def __complex__(self):
        raise self.escape("converted to a Python complex")

    def __format__(self, spec):
        raise self.escape("formatted as text (print, f-string or str.format)")

    def __buffer__(self, flags):
        raise self.escape("read through the buffer protocol (bytes(), memoryview, a file write or a socket)")

    def __iter__(self):
        return (self[index] for index in range(len(self.value)))

    def __copy__(self):
        return self.recorder.call_method(self, "copy", (), {})

    def __deepcopy__(self, memo):
        return self.recorder.call_method(self, "copy", (), {})

    # -- indexing -------------------------------------------------------------------------
    def __getitem__(self, key):
        return self.recorder.call(operator.getitem, (self, key), {})

    def __setitem__(self, key, value):
        self.recorder.call(operator.setitem, (self, key, value), {})

    # -- attributes that are arrays, and methods --------------------------------------------
    @property
    def T(self):
        return self.recorder.call_attribute(self, "T")

    @property
    def mT(self):
        return self.recorder.call_attribute(self, "mT")

    @property
    def real(self):
        return self.recorder.call_attribute(self, "real")

    @property
    def imag(self):
        return self.recorder.call_attribute(self, "imag")

    @property
    def data(self):
        raise self.escape("read as raw memory (.data)")

    @property
    def ctypes(self):
        raise self.escape("read as raw memory (.ctypes)")

    def __getattr__(self, name):
        # only called for names not defined above: the ndarray (or cupy.ndarray) methods
        attribute = getattr(type(self.value), name, None)
        if attribute is None or not callable(attribute) or name.startswith("__"):
            raise AttributeError(f"{type(self.value).__name__} (traced) has no attribute {name!r}")
        if name in ESCAPING_METHODS:
            raise self.escape(f"read with .{name}()")
        return _BoundMethod(self, name)


class _BoundMethod:
    __slots__ = ("array", "name")

    def __init__(self, array, name):
        self.array = array
        self.name = name

    def __call__(self, *args, **kwargs):
        return self.array.recorder.call_method(self.array, self.name, args, kwargs)


class _ViewMarker:
    """What `TracedArray.base` gives for a view: not None, and not an array one could compute with."""

    def __repr__(self):
        return "<base of a traced view>"


_VIEW_MARKER = _ViewMarker()


def _binary(symbol, function, reflected=False):
    def operator_method(self, other):
        operands = (other, self) if reflected else (self, other)
        return self.recorder.call_operator(symbol, function, operands)

    return operator_method


def _inplace(symbol, function):
    def operator_method(self, other):
        self.recorder.call_inplace(symbol, function, self, other)
        return self

    return operator_method


def _unary(symbol, function):
    def operator_method(self):
        return self.recorder.call_operator(symbol, function, (self,))

    return operator_method


BINARY_OPERATORS = {
    "add": ("+", operator.add), "sub": ("-", operator.sub), "mul": ("*", operator.mul),
    "truediv": ("/", operator.truediv), "floordiv": ("//", operator.floordiv), "mod": ("%", operator.mod),
    "pow": ("**", operator.pow), "matmul": ("@", operator.matmul), "and": ("&", operator.and_),
    "or": ("|", operator.or_), "xor": ("^", operator.xor), "lshift": ("<<", operator.lshift),
    "rshift": (">>", operator.rshift),
}
COMPARISONS = {"lt": ("<", operator.lt), "le": ("<=", operator.le), "gt": (">", operator.gt),
               "ge": (">=", operator.ge), "eq": ("==", operator.eq), "ne": ("!=", operator.ne)}
INPLACE_OPERATORS = {
    "iadd": ("+=", operator.iadd), "isub": ("-=", operator.isub), "imul": ("*=", operator.imul),
    "itruediv": ("/=", operator.itruediv), "ifloordiv": ("//=", operator.ifloordiv), "imod": ("%=", operator.imod),
    "ipow": ("**=", operator.ipow), "imatmul": ("@=", operator.imatmul), "iand": ("&=", operator.iand),
    "ior": ("|=", operator.ior), "ixor": ("^=", operator.ixor), "ilshift": ("<<=", operator.ilshift),
    "irshift": (">>=", operator.irshift),
}
UNARY_OPERATORS = {"neg": ("-", operator.neg), "pos": ("+", operator.pos), "abs": ("abs", operator.abs),
                   "invert": ("~", operator.invert)}

for _name, (_symbol, _function) in BINARY_OPERATORS.items():
    setattr(TracedArray, f"__{_name}__", _binary(_symbol, _function))
    setattr(TracedArray, f"__r{_name}__", _binary(_symbol, _function, reflected=True))
for _name, (_symbol, _function) in COMPARISONS.items():
    setattr(TracedArray, f"__{_name}__", _binary(_symbol, _function))
for _name, (_symbol, _function) in INPLACE_OPERATORS.items():
    setattr(TracedArray, f"__{_name}__", _inplace(_symbol, _function))
for _name, (_symbol, _function) in UNARY_OPERATORS.items():
    setattr(TracedArray, f"__{_name}__", _unary(_symbol, _function))
