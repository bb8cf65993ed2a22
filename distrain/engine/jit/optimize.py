"""The passes between capture and code generation, each switchable (`passes=`).

In order: dead-code elimination, constant folding, common-subexpression elimination,
elementwise fusion (groups found; on the GPU one generated kernel each, on the CPU the
buffer plan runs them in place), and the buffer plan (out= buffers allocated once and
reused by liveness). Each keeps results bit-identical (the verifying replay checks the
optimised program against the eager run). `passes=()` replays the capture as recorded.
"""
from __future__ import annotations

from ...errors import ArgumentError
from .passes.buffers import plan_buffers
from .passes.common_subexpressions import eliminate_common_subexpressions
from .passes.constant_folding import fold_constants
from .passes.dead_code import eliminate_dead_code
from .passes.fusion import fuse_elementwise
from .program import Program

ALL_PASSES = ("dead_code", "constant_folding", "common_subexpressions", "fusion", "buffers")


def chosen_passes(passes):
    if passes is None:
        return ALL_PASSES
    passes = tuple(passes)
    unknown = [name for name in passes if name not in ALL_PASSES]
    if unknown:
        raise ArgumentError(f"distrain.jit: unknown pass(es) {unknown}; the passes are {list(ALL_PASSES)}")
    return passes


def build_program(capture, passes=None):
    """The compiled replay of `capture` after the chosen passes (None: all), with a report of what each did."""
    passes = chosen_passes(passes)
    graph = capture.graph
    report = {"instructions captured": len(graph.instructions)}
    if "dead_code" in passes:
        graph, report["dead instructions removed"] = eliminate_dead_code(graph)
    if "constant_folding" in passes:
        graph, report["instructions folded into constants"] = fold_constants(graph)
    if "common_subexpressions" in passes:
        graph, report["repeated instructions merged"] = eliminate_common_subexpressions(graph)
    groups = []
    if "fusion" in passes:
        graph, groups = fuse_elementwise(graph)
        report["fused elementwise groups"] = len(groups)
    plan = plan_buffers(graph) if "buffers" in passes else None
    if plan is not None:
        report["results written into buffers allocated once"] = len(plan.out) + len(plan.creations)
        report["results written in place into a dying input"] = plan.in_place
    report["instructions replayed"] = len(graph.instructions)
    program = Program(capture, plan, graph=graph)
    program.report, program.groups, program.plan = report, groups, plan
    return program
