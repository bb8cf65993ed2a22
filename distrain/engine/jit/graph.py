"""The captured graph: values (slots) and the instructions that compute them, in eager order.

A graph is a straight-line program over arrays (NOTE [ Capture at the array level ] in
traced_array.py). Every array the program touches has a slot:

  input     an array the caller passes on every replay (the tensors given to the function)
  state     a persistent array bound by reference: a parameter, gradient or buffer; the
            program reads it and may write it in place, so a replay sees the optimizer's
            updates and leaves running statistics and gradients where eager would
  constant  an array from outside the graph: one the function reached without it being an
            input or state (a tensor it closed over, a module's plain tensor attribute, the
            weights of a module the capture could not find) is bound by reference
            (`by_reference`): a replay reads its current values and writes it in place as eager
            would; constants made by the passes (folding) are the graph's own
  result    what an instruction returned (a fresh array, or a view of another slot)

An instruction is one array call exactly as eager made it: a function or ufunc method,
an ndarray method, an operator, an indexing or a slice assignment, or a random draw.
Arguments are kept as they were, with every array replaced by a `Ref` to its slot, so a
replay makes the same calls with the same constants. `writes` lists the slots a call
modifies in place (out=, slice assignment, `+=`, `fill`, ufunc.at): the passes never move
a read across a write of the same memory, and never share or fold a written buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class Ref:
    """An array argument: the value of slot `slot`."""

    __slots__ = ("slot",)

    def __init__(self, slot):
        self.slot = slot

    def __repr__(self):
        return f"%{self.slot}"

    def __eq__(self, other):
        return type(other) is Ref and other.slot == self.slot

    def __hash__(self):
        return hash(("Ref", self.slot))


@dataclass
class Value:
    """What the graph knows of one slot's array."""

    slot: int
    kind: str  # "input" | "state" | "constant" | "result"
    shape: tuple
    dtype: object
    strides: tuple
    root: int  # the slot owning the memory this array lives in (itself unless a view)
    producer: int = -1  # the instruction that made a result, else -1
    name: str = ""  # what it is to the user: "input 0", "fc1.weight", "fc1.weight.grad", ...
    contiguous: bool = True
    array_type: type = None  # numpy.ndarray, cupy.ndarray, or a NumPy scalar type (a 0-d result of a reduction)

    @property
    def nbytes(self):
        count = 1
        for extent in self.shape:
            count *= extent
        return count * self.dtype.itemsize


@dataclass
class Instruction:
    """One array call (see the module docstring). `outputs` holds the result slots (empty if none)."""

    kind: str  # "call" | "method" | "attribute" | "operator" | "inplace" | "getitem" | "setitem" | "draw"
    target: object  # the callable; the method/attribute name; the operator symbol; (generator, draw name)
    args: tuple
    kwargs: dict
    outputs: tuple = ()
    many: bool = False  # the call returned a tuple of arrays (outputs holds each)
    writes: tuple = ()
    location: str = ""
    function: object = None  # for operators: the operator function (operator.add, ...)
    effect: bool = False  # kept whatever its outputs (a check of values that raises on bad input)
    errstate: tuple = ()  # numpy.errstate settings it ran under, when not those the capture started with

    def reads(self):
        """The slots this instruction reads (its array arguments)."""
        found = []
        _collect_refs(self.args, found)
        _collect_refs(self.kwargs, found)
        return found

    def describe(self) -> str:
        """A line for `explain` and error messages: '%7 = numpy.matmul(%3, %5)'."""
        outputs = ", ".join(f"%{slot}" for slot in self.outputs)
        head = f"{outputs} = " if outputs else ""
        args = ", ".join([repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()])
        if self.kind == "call":
            return f"{head}{callable_name(self.target)}({args})"
        if self.kind == "method":
            return f"{head}{self.args[0]!r}.{self.target}({', '.join(repr(a) for a in self.args[1:])})"
        if self.kind == "draw":
            return f"{head}random.{self.target[1]}({args})"
        return f"{head}{self.kind} {self.target}({args})"


def _collect_refs(value, found):
    kind = type(value)
    if kind is Ref:
        found.append(value.slot)
    elif kind is tuple or kind is list:
        for item in value:
            _collect_refs(item, found)
    elif kind is dict:
        for item in value.values():
            _collect_refs(item, found)
    elif kind is slice:
        _collect_refs((value.start, value.stop, value.step), found)


def map_refs(value, function):
    """`value` with every Ref replaced by function(ref) (a new structure; the original is kept)."""
    kind = type(value)
    if kind is Ref:
        return function(value)
    if kind is tuple:
        return tuple(map_refs(item, function) for item in value)
    if kind is list:
        return [map_refs(item, function) for item in value]
    if kind is dict:
        return {key: map_refs(item, function) for key, item in value.items()}
    if kind is slice:
        return slice(*(map_refs(item, function) for item in (value.start, value.stop, value.step)))
    return value


def callable_name(target) -> str:
    """'numpy.matmul', 'numpy.add.reduce', 'operator.getitem': a readable, importable name."""
    owner = getattr(target, "__self__", None)
    if owner is not None and hasattr(owner, "nin"):  # a ufunc method: numpy.add.reduce
        return f"{callable_name(owner)}.{target.__name__}"
    module = getattr(target, "__module__", None) or type(target).__module__
    if hasattr(target, "nin") and module in (None, "numpy._core.umath", "numpy.core.umath"):
        module = "numpy"
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    module = {"numpy._core.multiarray": "numpy", "numpy._core.numeric": "numpy",
              "numpy._core.fromnumeric": "numpy", "numpy.core.multiarray": "numpy"}.get(module, module)
    return f"{module}.{name}" if module else name


@dataclass
class Graph:
    """A captured program (see the module docstring)."""

    values: list = field(default_factory=list)
    instructions: list = field(default_factory=list)
    inputs: list = field(default_factory=list)  # input slots, in the order of the flattened inputs
    output: object = None  # the returned structure, with a Ref for every array
    constants: dict = field(default_factory=dict)  # slot -> array (see by_reference)
    by_reference: set = field(default_factory=set)  # constant slots bound to a live array from outside
    state: dict = field(default_factory=dict)  # slot -> the live array it is bound to
    draws: dict = field(default_factory=dict)  # generator key -> the generator object

    def op_count(self) -> int:
        return len(self.instructions)
