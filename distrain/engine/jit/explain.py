"""`distrain.jit.explain(fn, *inputs)`: how capturing `fn` goes, in words, without raising.

It captures `fn` on the inputs (running it once, as trace does: a training step moves the
weights once) and reports what a user tuning a static graph wants to know: how many array
calls were captured and of which kinds, what each pass did, the fused elementwise groups
and where in the code they come from, the buffers the replay allocates once and the peak
memory that saves, the inputs, state and constants. If the capture fails, the report says
where and why instead of raising, so `print(distrain.jit.explain(step, x, y))` is a safe
first thing to try.
"""
from __future__ import annotations

import collections
import os

from .errors import CaptureError
from .graph import callable_name
from .traced_function import TracedFunction


class Explanation:
    """The report (print it). Attributes: captured (bool), error, op_count, ops (Counter), report (per pass),
    groups, buffers (count), buffer_bytes, peak_bytes_eager, peak_bytes_planned, code."""

    def __init__(self, function, traced=None, error=None):
        self.function = function
        self.captured = traced is not None
        self.error = error
        self.groups, self.ops, self.report, self.code = [], collections.Counter(), {}, ""
        self.op_count = self.buffers = self.buffer_bytes = self.peak_bytes_eager = self.peak_bytes_planned = 0
        self.inputs = self.state = self.constants = 0
        if traced is None:
            return
        program = traced.program
        capture_graph = traced.graph
        self.op_count = len(capture_graph.instructions)
        for instruction in capture_graph.instructions:
            self.ops[_op_name(instruction)] += 1
        self.report = dict(program.report)
        self.groups = [(group.names, program.graph.instructions[group.indices[0]].location
                        if not group.on_gpu else "") for group in program.groups]
        self.groups = [(names, _short_location(location)) for names, location in self.groups]
        plan = program.plan
        if plan is not None:
            self.buffers = len(plan.buffers)
            self.buffer_bytes, self.unshared_bytes = plan.block_bytes, plan.unshared_bytes
            self.peak_bytes_eager, self.peak_bytes_planned = plan.fresh_bytes_peak, plan.planned_peak
            self.allocations = (plan.allocations_before, plan.allocations_after)
        kinds = collections.Counter(value.kind for value in capture_graph.values)
        self.inputs, self.state, self.constants = kinds["input"], kinds["state"], kinds["constant"]
        self.code = program.source

    def __str__(self):
        name = getattr(self.function, "__qualname__", type(self.function).__name__)
        if not self.captured:
            return (f"distrain.jit.explain({name}): the capture failed.\n"
                    f"{self.error}\n")
        lines = [f"distrain.jit.explain({name}): captured {self.op_count} array calls; inputs {self.inputs}, "
                 f"state arrays {self.state} (parameters, gradients, buffers), constants {self.constants}."]
        lines.append("  most frequent calls: " + ", ".join(f"{op} x{count}" for op, count in self.ops.most_common(8)))
        lines.append("  passes:")
        lines += [f"    {what}: {count}" for what, count in self.report.items()]
        if self.groups:
            lines.append(f"  fused elementwise groups ({len(self.groups)}):")
            lines += [f"    {' -> '.join(names)}  ({location})" for names, location in self.groups[:12]]
            if len(self.groups) > 12:
                lines.append(f"    ... and {len(self.groups) - 12} more")
        if self.buffers:
            before, after = self.allocations
            lines.append(f"  buffers allocated once: {self.buffers} results share {_mb(self.buffer_bytes)} by liveness "
                         f"(one buffer each would take {_mb(self.unshared_bytes)}: {_mb(self.unshared_bytes - self.buffer_bytes)} "
                         f"saved); arrays allocated per replay {before} -> {after}; peak temporary memory "
                         f"{_mb(self.peak_bytes_eager)} eagerly, {_mb(self.peak_bytes_planned)} replayed")
        return "\n".join(lines) + "\n"

    __repr__ = __str__


def _op_name(instruction):
    if instruction.kind == "call":
        return callable_name(instruction.target).replace("numpy.", "np.")
    if instruction.kind == "method":
        return f".{instruction.target}()"
    if instruction.kind in ("operator", "inplace"):
        return instruction.target
    if instruction.kind == "draw":
        return f"random.{instruction.target[1]}"
    return {"getitem": "x[...]", "setitem": "x[...] = y", "attribute": "attribute"}[instruction.kind]


def _short_location(location):
    if not location:
        return "generated kernel"
    filename, _, line = location.rpartition(":")
    return f"{os.path.relpath(filename) if not filename.startswith('<') else filename}:{line}"


def _mb(nbytes):
    return f"{nbytes / 2 ** 20:.2f} MiB" if nbytes >= 2 ** 20 else f"{nbytes / 1024:.1f} KiB"


def explain(function, *inputs, **kwargs) -> Explanation:
    """Capture `function(*inputs, **kwargs)` and report how it went (see the module docstring).

    `function` may be a module, a function, or a compile_step's step (then give inputs and targets).
    """
    from .compiled_step import CompiledStep

    if isinstance(function, CompiledStep):
        function.optimizer.zero_grad(set_to_none=True)
        target = function._forward_backward
        modules = function._options["modules"]
    else:
        target, modules = function, None
    try:
        traced = TracedFunction(target, inputs, kwargs, modules=modules)
    except CaptureError as error:
        return Explanation(function, error=error)
    return Explanation(function, traced)
