"""The recorder: turns the array calls of one eager run into a `Graph`, computing as it goes.

Each recorded call runs at once on the concrete arrays (so capture is an eager run, and
shapes, dtypes and view relations are known exactly), and is appended to the graph with
its arrays replaced by slot references. How arrays become slots:

- a TracedArray argument is its slot;
- a plain array argument is an array from outside the graph (a tensor the function closed
  over, a module's plain tensor attribute): bound by reference, so a replay reads its
  values at that time and writes into it as eager would; tensors the function makes with
  distrain's factories are recorded as made afresh on every replay (`created`), so a plain
  array met here was there before the call (or comes from code that escapes the capture,
  which the verifying replay catches);
- a result is a new slot, whose `root` is the slot owning its memory (a view of a slot,
  or of a constant, keeps that slot as root) — what buffer planning needs to know.

Only one capture runs per thread (`active()`): the random module asks it whether a draw
must be recorded rather than made.
"""
from __future__ import annotations

import operator
import sys
import numpy

from ..capture_state import active, set_active

from .errors import CaptureError
from .graph import Graph, Instruction, Ref, Value
from .locations import _JIT, _LIBRARIES, user_location
from .recording_module import RecordingModule
from .traced_array import MUTATING_METHODS, VALUE_SHAPED, TracedArray

# functions (by name) that write into their first argument
MUTATING_FUNCTIONS = frozenset({"copyto", "put", "place", "putmask", "fill_diagonal", "put_along_axis",
                                "scatter_add", "scatter_max", "scatter_min"})  # (the last three: cupyx's)



def _is_array(value):
    return isinstance(value, numpy.ndarray) or (type(value).__module__.startswith("cupy") and hasattr(value, "__cuda_array_interface__"))


def _root(array):
    """The array owning `array`'s memory (through as_strided's stand-in object, whose .base is the array)."""
    while True:
        base = getattr(array, "base", None)
        if base is not None and not hasattr(base, "shape"):
            base = getattr(base, "base", None)
        if base is None or not hasattr(base, "shape"):
            return array
        array = base


class Recorder:
    """Records one capture (see the module docstring). Use as a context manager around the run."""

    def __init__(self):
        self.graph = Graph()
        self._root_slot = {}  # id(root array) -> slot owning it
        self._keep = []  # every root array seen, so that ids stay unique while capturing
        self._external_of = {}  # id(plain array) -> its constant slot (bound by reference)
        self.snapshots = {}  # constant slot -> its values at first use (for the verifying replay), or None
        self._modules = {}
        self._previous = None
        self._errors = numpy.geterr()
        self.finished = False
        self.generator_states = {}  # draw key -> (generator, its state before the capture's first draw)

    # -- the capture context ------------------------------------------------------------------
    def __enter__(self):
        self._previous = active()
        if self._previous is not None:
            raise CaptureError("distrain.jit: a capture is already running on this thread; a captured function "
                               "cannot itself capture (call the compiled step outside the function being traced)")
        set_active(self)
        return self

    def __exit__(self, *exc_info):
        set_active(self._previous)

    def finish(self):
        """The capture is over: refuse further recording, and let go of the run's arrays (no memory kept)."""
        self.finished = True
        self._keep, self._external_of, self._modules = [], {}, {}

    def module_for(self, concrete):
        module = sys.modules[type(concrete).__module__.split(".")[0]] if not isinstance(concrete, numpy.ndarray) \
            else numpy
        proxy = self._modules.get(module)
        if proxy is None:
            proxy = self._modules[module] = RecordingModule(module, self)
        return proxy

    # -- slots --------------------------------------------------------------------------------
    def _new_value(self, array, kind, name="", producer=-1):
        slot = len(self.graph.values)
        root = _root(array)
        root_slot = self._root_slot.get(id(root))
        if root_slot is None:
            root_slot = self._root_slot[id(root)] = slot
            self._keep.append(root)
        shape = tuple(getattr(array, "shape", ()))
        dtype = getattr(array, "dtype", None)
        if dtype is None:
            dtype = numpy.asarray(array).dtype
        strides = tuple(getattr(array, "strides", ()) or ())
        flags = getattr(array, "flags", None)
        contiguous = bool(flags.c_contiguous) if flags is not None else True
        self.graph.values.append(Value(slot, kind, shape, numpy.dtype(dtype), strides, root_slot, producer, name,
                                       contiguous, type(array)))
        return slot

    def bind_input(self, array, name):
        slot = self._new_value(array, "input", name)
        self.graph.inputs.append(slot)
        return TracedArray(array, slot, self)

    def bind_state(self, array, name):
        slot = self._new_value(array, "state", name)
        self.graph.state[slot] = array
        return TracedArray(array, slot, self)

    def external(self, array):
        """The slot of a plain array from outside the graph, bound by reference (see the module docstring)."""
        slot = self._external_of.get(id(array))
        if slot is None:
            slot = self._new_value(array, "constant", f"a tensor from outside the function {tuple(array.shape)} "
                                                      f"{array.dtype}")
            self.graph.constants[slot] = array
            self.graph.by_reference.add(slot)
            self._external_of[id(array)] = slot
            self._keep.append(array)
            if self.snapshots is not None:
                self.snapshots[slot] = array.copy()
        return slot

    def created(self, array):
        """A tensor made by a distrain factory during capture: made afresh on every replay (a copy of its values)."""
        own = array.copy()
        slot = self._new_value(own, "constant", f"made by a factory {tuple(array.shape)} {array.dtype}")
        self.graph.constants[slot] = own
        return self._record("method", "copy", type(own).copy, (TracedArray(own, slot, self),), {})

    # -- arguments ----------------------------------------------------------------------------
    def _convert(self, value, traced):
        """(encoded, concrete) for an argument structure; `traced` collects id(concrete) -> TracedArray."""
        kind = type(value)
        if kind is TracedArray:
            if value.recorder is not self:
                raise CaptureError("distrain.jit: a tensor from another capture was used in this one; capture "
                                   "each function on its own")
            traced[id(value.value)] = value
            return Ref(value.slot), value.value
        if kind is tuple or kind is list:
            pairs = [self._convert(item, traced) for item in value]
            return kind(p[0] for p in pairs), kind(p[1] for p in pairs)
        if kind is dict:
            pairs = {key: self._convert(item, traced) for key, item in value.items()}
            return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
        if kind is slice and (type(value.start) is TracedArray or type(value.stop) is TracedArray
                              or type(value.step) is TracedArray):
            raise next(v for v in (value.start, value.stop, value.step) if type(v) is TracedArray).escape(
                "used as a slice bound")
        if _is_array(value):
            return Ref(self.external(value)), value
        return value, value

    def _location(self):
        frame = sys._getframe(3)
        while frame is not None:
            filename = frame.f_code.co_filename
            if not filename.startswith(_JIT) and not filename.startswith(_LIBRARIES):
                return f"{filename}:{frame.f_lineno}"
            frame = frame.f_back
        return ""

    # -- recording ------------------------------------------------------------------------------
    def _errstate(self):
        errors = numpy.geterr()
        return () if errors == self._errors else tuple(sorted(errors.items()))

    def _record(self, kind, target, function, args, kwargs, writes_first=False, symbol=None):
        if self.finished:
            raise CaptureError("distrain.jit: a tensor computed during a capture was used after it (kept in a list, "
                               "on a module or in a closure); its graph is closed. Keep only the function's results.")
        traced = {}
        encoded_args, concrete_args = self._convert(args, traced)
        encoded_kwargs, concrete_kwargs = self._convert(kwargs, traced) if kwargs else ({}, {})
        self._refuse_value_shaped(kind, target, args, encoded_args)
        result = function(*concrete_args, **concrete_kwargs)
        writes = []
        if writes_first:
            first = encoded_args[0]
            if type(first) is Ref:
                writes.append(first.slot)
        out = encoded_kwargs.get("out") if encoded_kwargs else None
        if out is not None:
            for ref in (out if type(out) is tuple else (out,)):
                if type(ref) is Ref:
                    writes.append(ref.slot)
        instruction = Instruction(kind, target, encoded_args, encoded_kwargs, writes=tuple(writes),
                                  location=self._location(), function=symbol, errstate=self._errstate())
        wrapped, outputs, many = self._wrap(result, traced)
        if not outputs and not writes:
            return result  # metadata (a shape, a dtype, a flag): nothing to replay
        index = len(self.graph.instructions)
        instruction.outputs, instruction.many = tuple(outputs), many
        for slot in outputs:
            value = self.graph.values[slot]
            if value.producer == -1 and value.kind == "result":
                value.producer = index
        self.graph.instructions.append(instruction)
        return wrapped

    def _wrap(self, result, traced):
        """The TracedArray(s) for a call's result, their slots, and whether it was a tuple."""
        if _is_array(result) or isinstance(result, numpy.generic):
            return self._wrap_one(result, traced), [self._last_slot], False
        if type(result) is tuple and result and all(_is_array(item) or isinstance(item, numpy.generic)
                                                   for item in result):
            items, slots = [], []
            for item in result:
                items.append(self._wrap_one(item, traced))
                slots.append(self._last_slot)
            return tuple(items), slots, True
        return result, [], False

    def _wrap_one(self, array, traced):
        existing = traced.get(id(array))
        if existing is not None and existing.value is array:  # out=... returned its own argument
            self._last_slot = existing.slot
            return existing
        slot = self._new_value(array, "result", producer=len(self.graph.instructions))
        self._last_slot = slot
        return TracedArray(array, slot, self)

    def _refuse_value_shaped(self, kind, target, args, encoded_args):
        name = target if kind == "method" else getattr(target, "__name__", "")
        traced_args = [a for a in args if type(a) is TracedArray]
        if name in VALUE_SHAPED and traced_args:
            raise CaptureError(
                f"distrain.jit: {name}() at {user_location(4)} returns a shape that depends on the values of "
                f"its input (shape {tuple(traced_args[0].value.shape)}); a static graph cannot hold it. Use "
                "fixed-shape forms: a mask multiplied in (x * mask), distrain.where, masked_fill, or topk with "
                "a fixed k.")
        if name == "repeat" and len(args) > 1 and type(args[1]) is TracedArray:  # x.repeat(r) and numpy.repeat(x, r)
            raise CaptureError(
                f"distrain.jit: repeat/repeat_interleave with repeat counts from a tensor at {user_location(4)}: the "
                "result's length depends on the counts' values; a static graph cannot hold it. Pass the counts "
                "as Python ints, or pad to a fixed length.")
        if kind == "call" and target is numpy.where and len(args) == 1 and traced_args:
            raise CaptureError(f"distrain.jit: numpy.where(condition) with one argument at {user_location(4)} "
                               "returns indices whose count depends on the values; use where(cond, a, b).")
        if kind == "getitem":
            key = args[1] if type(args[1]) is tuple else (args[1],)
            for item in key:
                if type(item) is TracedArray and item.value.dtype == numpy.bool_:
                    raise CaptureError(
                        f"distrain.jit: boolean-mask indexing at {user_location(4)} selects as many elements as the "
                        f"mask of shape {tuple(item.value.shape)} has True values, so the result's shape depends on "
                        "the values; a static graph cannot hold it. Multiply by the mask or use distrain.where / "
                        "masked_fill instead.")

    def call(self, function, args, kwargs):
        """A function or ufunc (method) call."""
        if function is operator.getitem:
            return self._record("getitem", "[]", operator.getitem, args, {})
        if function is operator.setitem:
            return self._record("setitem", "[]=", operator.setitem, args, {}, writes_first=True)
        name = getattr(function, "__name__", "")
        writes_first = name in MUTATING_FUNCTIONS or name == "at"
        return self._record("call", function, function, tuple(args), dict(kwargs), writes_first=writes_first)

    def check(self, function, args):
        """A check of values that must run on every replay (ops/value_checks.py): kept even though it returns nothing."""
        traced = {}
        encoded, concrete = self._convert(tuple(args), traced)
        function(*concrete)
        self.graph.instructions.append(Instruction("call", function, encoded, {}, location=self._location(),
                                                   effect=True, errstate=self._errstate()))

    def call_method(self, array, name, args, kwargs):
        method = getattr(type(array.value), name)
        return self._record("method", name, method, (array, *args), dict(kwargs),
                            writes_first=name in MUTATING_METHODS)

    def call_attribute(self, array, name):
        return self._record("attribute", name, lambda value: getattr(value, name), (array,), {})

    def call_operator(self, symbol, function, operands):
        return self._record("operator", symbol, function, tuple(operands), {}, symbol=function)

    def call_inplace(self, symbol, function, array, other):
        self._record("inplace", symbol, function, (array, other), {}, writes_first=True, symbol=function)

    def _generator_key(self, generator):
        """The device's name for its default generator (what a saved graph draws from), another name for others."""
        from ..random import _default_generators

        if _default_generators.get(generator.device) is generator:
            return str(generator.device)
        for key, known in self.graph.draws.items():
            if known is generator:
                return key
        return f"{generator.device}#{len(self.graph.draws)}"

    def draw(self, generator, name, args):
        """A random draw from a distrain Generator: recorded, so every replay draws anew (see random.py)."""
        key = self._generator_key(generator)
        if key not in self.graph.draws:
            self.graph.draws[key] = generator
            self.generator_states[key] = (generator, generator.get_state())  # for the verifying replay
        result = getattr(generator, "_draw_" + name)(*args)
        instruction = Instruction("draw", (key, name), tuple(args), {}, location=self._location())
        wrapped, outputs, _ = self._wrap(result, {})
        instruction.outputs = tuple(outputs)
        self.graph.values[outputs[0]].producer = len(self.graph.instructions)
        self.graph.instructions.append(instruction)
        return wrapped

