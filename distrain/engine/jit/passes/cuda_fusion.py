"""One generated CuPy kernel per fused elementwise group (fusion.py), for graphs on the GPU.

The kernel computes the chain per element in registers: each op becomes one line of C
with a typed temporary, using the CUDA math functions CuPy's own ufuncs call, and is
compiled with `--fmad=false` so that no multiply-add is contracted (the rounding stays
that of the separate kernels). Only groups computing in one floating dtype throughout are
fused (every operand and result float32, say): then Python numbers become literals of that
dtype, as NumPy's weak scalars are, and no C promotion rule (integer division, int to
float) can differ from NumPy's. A group with another dtype, or an op without a C form
here, stays unfused (its ops run as captured).
"""
from __future__ import annotations

from dataclasses import replace

import numpy

from ..graph import Instruction, Ref

C_TYPES = {"float32": "float", "float64": "double", "float16": "float16", "int32": "int", "int64": "long long",
           "bool": "bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short"}

# the C form of each ufunc, on operands a, b (c for where)
C_FORMS = {
    "add": "{a} + {b}", "subtract": "{a} - {b}", "multiply": "{a} * {b}", "true_divide": "{a} / {b}",
    "negative": "-{a}", "positive": "{a}", "absolute": "abs({a})", "exp": "exp({a})", "log": "log({a})",
    "sqrt": "sqrt({a})", "tanh": "tanh({a})", "sin": "sin({a})", "cos": "cos({a})", "log1p": "log1p({a})",
    "expm1": "expm1({a})", "square": "{a} * {a}", "reciprocal": "1 / {a}",
    "maximum": "({a} > {b} || isnan({a})) ? {a} : {b}", "minimum": "({a} < {b} || isnan({a})) ? {a} : {b}",
    "greater": "{a} > {b}", "greater_equal": "{a} >= {b}", "less": "{a} < {b}", "less_equal": "{a} <= {b}",
    "equal": "{a} == {b}", "not_equal": "{a} != {b}", "logical_and": "{a} && {b}", "logical_or": "{a} || {b}",
    "logical_not": "!{a}", "sign": "({a} > 0) - ({a} < 0)",
}


class FusedKernel:
    """A generated elementwise kernel, called like a function of the group's outside inputs."""

    def __init__(self, name, in_params, out_param, body, ufuncs):
        self.name = name
        self.in_params = in_params
        self.out_param = out_param
        self.body = body
        self.ufuncs = ufuncs
        self.__name__ = name
        self._kernel = None

    @property
    def source(self):
        return f"// in: {self.in_params}\n// out: {self.out_param}\n{self.body}"

    def __call__(self, *arrays):
        if self._kernel is None:
            import cupy

            self._kernel = cupy.ElementwiseKernel(self.in_params, self.out_param, self.body, self.name,
                                                  options=("--fmad=false",))
        return self._kernel(*arrays)


def kernel_for(graph, group):
    """(FusedKernel, its array arguments) for one group, or None when an op has no C form."""
    values = graph.values
    inside = {graph.instructions[index].outputs[0] for index in group.indices}
    params, arguments, lines = [], [], []
    names = {}

    def operand(arg, dtype):
        if type(arg) is Ref:
            if arg.slot in inside:
                return names[arg.slot]
            if arg.slot not in names:
                value = values[arg.slot]
                names[arg.slot] = f"in{len(params)}"
                params.append(f"{C_TYPES[value.dtype.name]} {names[arg.slot]}")
                arguments.append(arg)
            return names[arg.slot]
        if isinstance(arg, (bool, int, float, numpy.generic)):
            return f"(({C_TYPES[dtype.name]}){float(arg)!r})" if dtype.kind == "f" else f"(({C_TYPES[dtype.name]}){int(arg)})"
        return None

    for position, index in enumerate(group.indices):
        instruction = graph.instructions[index]
        name = group.names[position]
        form = C_FORMS.get(name)
        output = values[instruction.outputs[0]]
        if form is None or output.dtype.kind != "f" or output.dtype != values[group.output].dtype \
                or any(values[a.slot].dtype != output.dtype for a in instruction.args if type(a) is Ref):
            return None  # one floating dtype throughout (see the module docstring)
        operands = [operand(arg, output.dtype) for arg in instruction.args]
        if any(op is None for op in operands):
            return None
        temporary = f"t{position}"
        names[instruction.outputs[0]] = temporary
        expression = form.format(a=operands[0], b=operands[1] if len(operands) > 1 else "")
        lines.append(f"{C_TYPES[output.dtype.name]} {temporary} = {expression};")
    final = values[group.output]
    lines.append(f"out = {names[group.output]};")
    kernel = FusedKernel(f"distrain_fused_{'_'.join(group.names)}"[:60], ", ".join(params),
                         f"{C_TYPES[final.dtype.name]} out", "\n".join(lines), group.names)
    return kernel, arguments


def replace_with_kernels(graph, groups):
    """`graph` with each group's instructions replaced by one call of its kernel (at the last op's place)."""
    by_last, dropped = {}, set()
    for group in groups:
        made = kernel_for(graph, group)
        if made is None or _written_inside(graph, group, made[1]):
            continue
        kernel, arguments = made
        by_last[group.indices[-1]] = Instruction("call", kernel, tuple(arguments), {}, outputs=(group.output,),
                                                 location=graph.instructions[group.indices[-1]].location)
        dropped.update(group.indices[:-1])
    if not by_last:
        return graph
    instructions = [by_last.get(index, instruction) for index, instruction in enumerate(graph.instructions)
                    if index not in dropped]
    return replace(graph, instructions=instructions)


def _written_inside(graph, group, arguments):
    """True when an outside input of the group is written between the group's first and last op."""
    roots = {graph.values[arg.slot].root for arg in arguments}
    for index in range(group.indices[0], group.indices[-1]):
        if any(graph.values[slot].root in roots for slot in graph.instructions[index].writes):
            return True
    return False
