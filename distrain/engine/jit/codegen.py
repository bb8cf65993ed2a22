"""Turn a `Graph` into a Python function of arrays: one line per instruction, compiled once.

NOTE [ Generated code is made of checked parts ]
The source is compiled with exec(), so nothing from outside may become text in it: slots
become `v<number>`, functions, arrays and any value that is not a plain literal become
globals (`f3`, `k7`), literals are written with repr() (ints, finite floats, bools, None,
strings), and the only other text — method and attribute names, keyword names, operator
symbols — must be a Python identifier or one of the known operators (`_identifier`,
`_operator`), or the graph is refused. A graph loaded from a file is checked again on
load (serialization.py), but codegen does not rely on that.

A replay that walked a list of instructions would spend most of its time deciding what
each argument is. The generated function has that decided already: slots are local
variables, functions/constants/state arrays are globals of the function, and operators are
written as operators, so one instruction costs little more than the array call itself
(the same approach as torch.fx's code generation). `source` is kept for `explain` and for
error messages (the generated code is registered with linecache so tracebacks show it).
"""
from __future__ import annotations

import itertools
import keyword
import linecache
import math
import operator

import numpy

from .errors import SerializationError
from .graph import Graph, Ref, map_refs

_counter = itertools.count()
_UNARY_SYMBOLS = {"-": "-", "+": "+", "~": "~"}
_OPERATORS = frozenset({"+", "-", "*", "/", "//", "%", "**", "@", "&", "|", "^", "<<", ">>", "<", "<=", ">", ">=",
                        "==", "!=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "@=", "&=", "|=", "^=", "<<=", ">>=",
                        "~", "abs"})


def _identifier(name):
    """`name` if it is a plain Python identifier (not a keyword), else a refusal (NOTE above)."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SerializationError(f"distrain.jit: {name!r} cannot be a method, attribute or keyword name in a graph")
    return name


def _operator(symbol):
    if symbol not in _OPERATORS:
        raise SerializationError(f"distrain.jit: {symbol!r} is not an operator a graph may use")
    return symbol


class _Copy:
    """In a rendered return value: a fresh copy of the global `name`."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class Generated:
    """The compiled replay: `function(*inputs)` returns the output structure of arrays."""

    def __init__(self, function, source, globals_):
        self.function = function
        self.source = source
        self.globals = globals_


class _Writer:
    def __init__(self, graph: Graph, plan=None):
        self.graph = graph
        self.plan = plan  # buffers.BufferPlan or None
        self.globals = {"__builtins__": __builtins__}
        self._global_ids = {}
        self.lines = []

    def name(self, slot):
        return f"v{operator.index(slot)}"  # a number, whatever a graph file says

    def bind_global(self, value, prefix="k"):
        key = (prefix, id(value))
        name = self._global_ids.get(key)
        if name is None:
            name = self._global_ids[key] = f"{prefix}{len(self._global_ids)}"
            self.globals[name] = value
        return name

    def render(self, value):
        kind = type(value)
        if kind is Ref:
            return self.name(value.slot)
        if kind is _Copy:
            return f"{value.name}.copy()"
        if value is None or kind is bool or kind is int or kind is str:
            return repr(value)
        if kind is float and math.isfinite(value):
            return repr(value)
        if value is Ellipsis:
            return "..."
        if kind is tuple:
            items = [self.render(item) for item in value]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if kind is list:
            return "[" + ", ".join(self.render(item) for item in value) + "]"
        if kind is dict and all(type(key) is str for key in value):
            return "{" + ", ".join(f"{key!r}: {self.render(item)}" for key, item in value.items()) + "}"
        if kind is slice:
            return f"slice({self.render(value.start)}, {self.render(value.stop)}, {self.render(value.step)})"
        return self.bind_global(value)

    def arguments(self, args, kwargs):
        parts = [self.render(arg) for arg in args]
        parts += [f"{_identifier(key)}={self.render(item)}" for key, item in kwargs.items()]
        return ", ".join(parts)

    def _returned(self, ref):
        """A returned constant of the graph's own is copied: the caller may keep or change what it gets."""
        slot = ref.slot
        if slot in self.graph.constants and slot not in self.graph.by_reference and slot not in self.fresh_constants:
            return _Copy(self.bind_global(self.graph.constants[slot], "c"))
        return ref

    def is_local(self, slot):
        return self.graph.values[slot].kind in ("input", "result") or slot in self.fresh_constants

    def emit(self, index, instruction):
        # a result that is a state array or constant is the call's own out= argument: the global holds it already
        outputs = ", ".join(self.name(slot) if self.is_local(slot) else "_" for slot in instruction.outputs)
        if outputs == "_":
            outputs = ""
        if instruction.many:
            outputs += "," if len(instruction.outputs) == 1 else ""
        head = f"{outputs} = " if outputs else ""
        kind, args = instruction.kind, instruction.args
        kwargs = instruction.kwargs
        if self.plan is not None:
            line = self.plan.render(self, index, instruction, head)
            if line is not None:
                self.lines.append(line)
                return
        if kind == "call":
            function = self.bind_global(instruction.target, "f")
            self.lines.append(f"{head}{function}({self.arguments(args, kwargs)})")
        elif kind == "method":
            method = _identifier(instruction.target)
            self.lines.append(f"{head}{self.render(args[0])}.{method}({self.arguments(args[1:], kwargs)})")
        elif kind == "attribute":
            self.lines.append(f"{head}{self.render(args[0])}.{_identifier(instruction.target)}")
        elif kind == "operator":
            _operator(instruction.target)
            if len(args) == 2:
                self.lines.append(f"{head}{self.render(args[0])} {instruction.target} {self.render(args[1])}")
            elif instruction.target == "abs":
                self.lines.append(f"{head}abs({self.render(args[0])})")
            else:
                self.lines.append(f"{head}{_UNARY_SYMBOLS[instruction.target]}{self.render(args[0])}")
        elif kind == "inplace":
            target = args[0]
            if type(target) is Ref and self.is_local(target.slot):
                self.lines.append(f"{self.render(target)} {_operator(instruction.target)} {self.render(args[1])}")
            else:  # a global (state, constant): `x += y` would make it a local of the function
                function = self.bind_global(instruction.function, "f")
                self.lines.append(f"{function}({self.render(target)}, {self.render(args[1])})")
        elif kind == "getitem":
            self.lines.append(f"{head}{self.render(args[0])}[{self.render(args[1])}]")
        elif kind == "setitem":
            self.lines.append(f"{self.render(args[0])}[{self.render(args[1])}] = {self.render(args[2])}")
        elif kind == "draw":
            generator = self.bind_global(self.graph.draws[instruction.target[0]], "g")
            draw = _identifier(instruction.target[1])
            self.lines.append(f"{head}{generator}._draw_{draw}({self.arguments(args, kwargs)})")
        else:
            raise AssertionError(f"unknown instruction kind {kind}")

    def write(self):
        graph = self.graph
        written = {slot for instruction in graph.instructions for slot in instruction.writes}
        # the graph's own constants written in place start each replay as a fresh copy; arrays from outside
        # (by_reference) are the live arrays themselves, written where eager writes
        self.fresh_constants = {slot for slot in graph.constants if slot in written and slot not in graph.by_reference}
        for slot, array in graph.constants.items():
            if slot in self.fresh_constants:
                self.lines.append(f"{self.name(slot)} = {self.bind_global(array, 'c')}.copy()")
            else:
                self.globals[self.name(slot)] = array
        for slot, array in graph.state.items():
            self.globals[self.name(slot)] = array
        errstate, lines = (), self.lines
        for index, instruction in enumerate(graph.instructions):
            if instruction.errstate != errstate:  # NumPy's error settings as the op had them (errstate blocks)
                errstate = instruction.errstate
                self.lines = lines
                if errstate:
                    lines.append(f"with {self.bind_global(numpy.errstate, 'e')}(**{self.render(dict(errstate))}):")
                    self.lines = []
            self.emit(index, instruction)
            if self.lines is not lines:
                lines.extend("    " + line for line in self.lines)
                self.lines = [] if errstate else lines
        self.lines = lines
        self.lines.append(f"return {self.render(map_refs(graph.output, self._returned))}")
        parameters = ", ".join(self.name(slot) for slot in graph.inputs)
        body = "\n".join("    " + line for line in self.lines)
        return f"def replay({parameters}):\n{body}\n"


def generate(graph: Graph, plan=None) -> Generated:
    """Compile `graph` (with an optional buffer plan, see passes/buffers.py) into a replay function."""
    writer = _Writer(graph, plan)
    source = writer.write()
    filename = f"<distrain.jit replay {next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), writer.globals)
    return Generated(writer.globals["replay"], source, writer.globals)

