"""Static graphs (`distrain.jit`): capture a function or a whole training step once, replay it fast.

See NOTE [ Capture at the array level ] in traced_array.py for how capture works.
"""
from __future__ import annotations

from .errors import CaptureError, GuardError, SerializationError
from .compiled_step import CompiledStep
from .explain import Explanation, explain
from .onnx import export_onnx
from .serialization import load
from .traced_function import TracedFunction


def trace(module_or_fn, example_inputs, example_kwargs=None, *, verify=True, retrace=True, max_graphs=8,
          passes=None):
    """Capture `module_or_fn(*example_inputs)` into a static graph; calling the result replays it.

    Args:
        module_or_fn: an nn.Module or a function of tensors (which may call backward and
            step an optimizer: everything it does to arrays is captured).
        example_inputs: a tensor or a tuple of the positional arguments (tensors, arrays,
            numbers, and lists/dicts of them).
        verify: replay once right after capturing and compare with the eager run bit for
            bit (a CaptureError if anything escaped the capture).
        retrace: on a call with other shapes/dtypes or a changed model, capture again
            (up to `max_graphs` graphs); False: raise a GuardError naming the difference.
        passes: the optimisation passes to run (None: all; () for none).
    """
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    return TracedFunction(module_or_fn, example_inputs, example_kwargs, verify=verify, retrace=retrace,
                          max_graphs=max_graphs, passes=passes)


def compile_step(model, loss_fn, optimizer, *, verify=True, retrace=True, max_graphs=8, passes=None):
    """The whole training step as one static graph: `loss = step(inputs, targets)` each step.

    Each call does `optimizer.zero_grad(); loss_fn(model(inputs), targets).backward();
    optimizer.step()` and returns the loss. The first call captures forward, loss and
    backward (running them eagerly) and checks a replay against that run; later calls
    replay the arrays calls only, into gradients in the flat buffer, reduce them when
    `model` is a DistributedDataParallel, and run the optimizer (whose schedulers and
    param groups behave as eagerly). Other input shapes or a changed model retrace
    (see `trace` for verify/retrace/max_graphs/passes).
    """
    return CompiledStep(model, loss_fn, optimizer, verify=verify, retrace=retrace, max_graphs=max_graphs,
                        passes=passes)


__all__ = ["trace", "compile_step", "explain", "export_onnx", "load", "Explanation", "CompiledStep", "TracedFunction", "CaptureError", "GuardError", "SerializationError"]
