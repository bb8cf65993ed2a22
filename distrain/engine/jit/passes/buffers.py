"""Buffers allocated once, reused by liveness, and elementwise chains written in place.

Eagerly, every op allocates its result and the allocator frees it when the last tensor
holding it goes. A replay knows the whole program, so it can do better:

- every fresh result of a ufunc (including operators: `a + b` is numpy.add) gets an
  `out=` buffer allocated when the program is built, reused by any later result of the
  same shape and dtype once every reader (and view) of the earlier one is done;
- an elementwise op whose input dies at this op and has the output's shape, dtype and
  layout writes its result into that input (`numpy.multiply(t, b, out=t)`): a chain of
  elementwise ops runs in one buffer, the CPU form of elementwise fusion;
- `empty`/`empty_like` become the buffer itself, `zeros`/`zeros_like` a fill of it.

Results are unchanged bit for bit: the same ufuncs on the same values, only where they
write differs (NumPy handles an output that is exactly an input). Never planned: anything
returned or bound (the caller may keep it across replays), state, inputs, constants,
views, NumPy scalars, and results whose captured layout a fresh buffer would not have
(a view of it could then behave differently).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy

from ..graph import Ref
from .analysis import Analysis

OPERATOR_UFUNCS = {"+": "add", "-": "subtract", "*": "multiply", "/": "true_divide", "//": "floor_divide",
                   "%": "remainder", "**": "power", "@": "matmul", "&": "bitwise_and", "|": "bitwise_or",
                   "^": "bitwise_xor", "<<": "left_shift", ">>": "right_shift", "<": "less", "<=": "less_equal",
                   ">": "greater", ">=": "greater_equal", "==": "equal", "!=": "not_equal"}
UNARY_UFUNCS = {"-": "negative", "+": "positive", "abs": "absolute", "~": "invert"}
CREATIONS = {"empty": "empty", "empty_like": "empty", "zeros": "zeros", "zeros_like": "zeros"}


@dataclass
class BufferPlan:
    """Where planned instructions write (see the module docstring), and what it saves."""

    out: dict = field(default_factory=dict)  # instruction index -> ("buffer", name) or ("slot", slot) written into
    creations: dict = field(default_factory=dict)  # instruction index -> ("empty" | "zeros", buffer name)
    ufunc_of: dict = field(default_factory=dict)  # instruction index -> the ufunc an operator becomes
    buffers: dict = field(default_factory=dict)  # buffer name -> array
    in_place: int = 0  # results written into an input that dies with them
    fresh_bytes_peak: int = 0  # the peak of temporaries allocated per replay without the plan
    planned_peak: int = 0  # with it: the buffers (allocated once) plus what is still allocated per replay
    allocations_before: int = 0  # arrays allocated per replay without the plan
    allocations_after: int = 0  # ... and with it
    block_bytes: int = 0  # the memory the buffers take: blocks shared by results whose lifetimes do not overlap
    unshared_bytes: int = 0  # what they would take with one buffer per result (no reuse by liveness)

    @property
    def bytes_saved(self) -> int:
        """Memory that sharing blocks by liveness saves over one buffer per planned result."""
        return self.unshared_bytes - self.block_bytes

    def render(self, writer, index, instruction, head):
        """The line for a planned instruction (codegen.py asks for every one), or None to emit it as captured."""
        creation = self.creations.get(index)
        if creation is not None:
            kind, name = creation
            buffer = writer.bind_global(self.buffers[name], "b")
            target = writer.name(instruction.outputs[0])
            return f"{target} = {buffer}" if kind == "empty" else f"{target} = {buffer}; {buffer}.fill(0)"
        destination = self.out.get(index)
        if destination is None:
            return None
        kind, what = destination
        out = writer.bind_global(self.buffers[what], "b") if kind == "buffer" else writer.name(what)
        if instruction.kind == "call":
            arguments = writer.arguments(instruction.args, instruction.kwargs)
            return f"{head}{writer.bind_global(instruction.target, 'f')}({arguments}, out={out})"
        ufunc = writer.bind_global(self.ufunc_of[index], "f")
        return f"{head}{ufunc}({writer.arguments(instruction.args, {})}, out={out})"


def _module_of(value):
    return numpy if value.array_type is numpy.ndarray else sys.modules[value.array_type.__module__.split(".")[0]]


def _ufunc(instruction, value_of_first):
    """The ufunc an instruction applies with a single fresh result, or None."""
    if instruction.kind == "call":
        target = instruction.target
        if isinstance(target, numpy.ufunc) or (hasattr(target, "nin") and hasattr(target, "reduce")):
            if target.nout == 1 and "out" not in instruction.kwargs and "where" not in instruction.kwargs:
                return target
        return None
    if instruction.kind == "operator":
        table = OPERATOR_UFUNCS if len(instruction.args) == 2 else UNARY_UFUNCS
        name = table.get(instruction.target)
        return None if name is None else getattr(_module_of(value_of_first), name)
    return None


def plan_buffers(graph, in_place=True):
    """The BufferPlan of `graph` (see the module docstring)."""
    analysis = Analysis(graph)
    values, plan = graph.values, BufferPlan()
    free = _Blocks()  # memory blocks, shared by results whose lifetimes do not overlap
    owner_of = {}  # buffer name -> the slot whose memory it is now
    active = []  # (last use, buffer name)
    eager, unplanned = _Peak(), _Peak()  # temporaries allocated per replay: without the plan, and with it
    for index, instruction in enumerate(graph.instructions):
        still = []
        for last, name in active:  # buffers whose owner is done by now go back to the pool
            if last < index:
                free.release(name)
            else:
                still.append((last, name))
        active = still
        fresh = [slot for slot in instruction.outputs if _owns_array(analysis, values, slot)]
        planned = _plan_one(plan, analysis, values, index, instruction, free, owner_of, active, in_place) \
            if len(instruction.outputs) == 1 and fresh else False
        for slot in fresh:
            last = analysis.last_use.get(slot, index)
            eager.add(index, last, values[slot].nbytes)
            if not planned:
                unplanned.add(index, last, values[slot].nbytes)
    plan.allocations_before, plan.allocations_after = eager.count, unplanned.count
    plan.buffers = free.allocate()
    plan.block_bytes = free.total_bytes
    plan.unshared_bytes = sum(buffer.nbytes for buffer in plan.buffers.values())
    plan.fresh_bytes_peak = eager.peak
    plan.planned_peak = unplanned.peak + free.total_bytes
    return plan


class _Blocks:
    """Memory blocks for the planned results: best fit among the free ones, grown or added when none fits.

    Planning works on sizes only; `allocate()` then makes one byte array per block and,
    for each planned result, its view of the block's first bytes (shape and dtype).
    """

    def __init__(self):
        self.capacity, self.module, self.free = [], [], []
        self.placement = {}  # buffer name -> (block, module, shape, dtype)

    def take(self, module, value):
        need = max(value.nbytes, 1)
        candidates = [block for block in self.free if self.module[block] is module]
        fitting = [block for block in candidates if self.capacity[block] >= need]
        if fitting:
            block = min(fitting, key=self.capacity.__getitem__)
        elif candidates:
            block = max(candidates, key=self.capacity.__getitem__)
            self.capacity[block] = need
        else:
            block = len(self.capacity)
            self.capacity.append(need)
            self.module.append(module)
            self.free.append(block)
        self.free.remove(block)
        name = f"buffer{len(self.placement)}"
        self.placement[name] = (block, module, value.shape, value.dtype)
        return name

    def release(self, name):
        self.free.append(self.placement[name][0])

    @property
    def total_bytes(self):
        return sum(self.capacity)

    def allocate(self):
        blocks = [module.empty(capacity, dtype=numpy.uint8) for module, capacity in zip(self.module, self.capacity)]
        return {name: blocks[block][:_nbytes(shape, dtype)].view(dtype).reshape(shape)
                for name, (block, module, shape, dtype) in self.placement.items()}


def _nbytes(shape, dtype):
    count = 1
    for extent in shape:
        count *= extent
    return count * dtype.itemsize


class _Peak:
    """The peak of bytes alive over the instructions, for arrays alive from one index to another."""

    def __init__(self):
        self.events, self.count = [], 0

    def add(self, start, end, nbytes):
        self.events.append((start, end, nbytes))
        self.count += 1

    @property
    def peak(self):
        deltas = {}
        for start, end, nbytes in self.events:
            deltas[start] = deltas.get(start, 0) + nbytes
            deltas[end + 1] = deltas.get(end + 1, 0) - nbytes
        current = best = 0
        for index in sorted(deltas):
            current += deltas[index]
            best = max(best, current)
        return best


def _owns_array(analysis, values, slot):
    value = values[slot]
    array_type = value.array_type
    return analysis.is_fresh_result(slot) and array_type is not None and not value.dtype.hasobject and \
        (array_type is numpy.ndarray or array_type.__module__.startswith("cupy"))


def _plan_one(plan, analysis, values, index, instruction, free, owner_of, active, in_place):
    """Plan where one instruction's single fresh result goes; True if planned."""
    slot = instruction.outputs[0]
    value = values[slot]
    if not value.contiguous:
        return False
    module = _module_of(value)
    creation = CREATIONS.get(getattr(instruction.target, "__name__", "")) if instruction.kind == "call" else None
    if creation is not None and instruction.kwargs.get("order", "C") in ("C", "K", "A") and \
            getattr(instruction.target, "__module__", "").split(".")[0] in ("numpy", "cupy"):
        name = _take(free, plan, module, value)
        if name is None:
            return False
        plan.creations[index] = (creation, name)
        owner_of[name] = slot
        active.append((analysis.last_use.get(slot, index), name))
        return True
    ufunc = _ufunc(instruction, value)
    if ufunc is None:
        return False
    if instruction.kind == "operator":
        plan.ufunc_of[index] = ufunc
    if in_place and ufunc.nin <= 2 and getattr(ufunc, "__name__", "") != "matmul":
        donor = _dying_input(instruction, index, value, analysis, values)
        if donor is not None:
            plan.out[index] = ("slot", donor)
            plan.in_place += 1
            # the donor's memory (a pooled buffer or its own) now holds this result, alive as long as it is
            for position, (_, name) in enumerate(active):
                if owner_of.get(name) == donor:
                    active[position] = (analysis.last_use.get(slot, index), name)
                    owner_of[name] = slot
            return True
    name = _take(free, plan, module, value)
    if name is None:
        return False
    plan.out[index] = ("buffer", name)
    owner_of[name] = slot
    active.append((analysis.last_use.get(slot, index), name))
    return True


def _take(free, plan, module, value):
    if tuple(value.strides) != _c_strides(value.shape, value.dtype.itemsize) and _nbytes(value.shape, value.dtype) > \
            value.dtype.itemsize:
        return None  # a layout a fresh C-ordered buffer would not reproduce
    return free.take(module, value)


def _c_strides(shape, itemsize):
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


def _dying_input(instruction, index, value, analysis, values):
    """An input this elementwise instruction may overwrite: a fresh, unpinned array that dies here, alike in layout."""
    for arg in instruction.args:
        if type(arg) is not Ref:
            continue
        donor = arg.slot
        other = values[donor]
        if analysis.root[donor] != donor or donor in analysis.pinned or other.kind != "result":
            continue
        if analysis.last_use.get(donor) != index or other.shape != value.shape or other.dtype != value.dtype:
            continue
        if other.strides != value.strides or not other.contiguous or other.array_type is not value.array_type:
            continue
        if sum(1 for a in instruction.args if type(a) is Ref and a.slot == donor) != 1:
            continue
        return donor
    return None
