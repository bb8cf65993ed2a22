"""`distrain.jit.trace`: a function or module captured once, replayed on every call, retraced when needed.

The capture happens at trace time, on the example inputs (as torch.jit.trace does), and
is verified by a first replay (verify.py). Each call then checks the guards (guards.py):
a call like the captured one replays; a call with other shapes or a changed model is
captured again (its own graph, up to `max_graphs`), or refused with the differences.
"""
from __future__ import annotations

import threading

from .capture import modules_in, named_modules_of, run_capture
from .errors import GuardError
from .guards import StateGuard, describe_key_difference, input_key
from .optimize import build_program
from .verify import verify as verify_replay

DEFAULT_MAX_GRAPHS = 8


class Entry:
    __slots__ = ("program", "guard", "capture", "key")

    def __init__(self, key, capture, program):
        self.key = key
        self.capture = capture
        self.program = program
        self.guard = StateGuard(capture)


def capture_entry(function, args, kwargs, modules, key, verify=True, passes=None):
    """Capture, optimise, compile and (optionally) verify one call; (entry, the eager run's result)."""
    capture = run_capture(function, args, kwargs, modules, verify=verify)
    program = build_program(capture, passes)
    if verify:
        leaves = input_key(args, kwargs)[1]
        arrays = program.input_arrays(leaves)

        def replay():
            outputs, new_grads = program.run_arrays(arrays)
            return [*outputs, *new_grads]

        verify_replay(capture.before, replay, capture.eager_outputs)
        capture.before = None
    # the eager run's outputs, as a replay gives them (no autograd history into the capture's closed graph)
    outputs = capture.eager_outputs[:len(capture.graph.output[0])]
    capture.eager_outputs, capture.result = [], None  # the eager run's arrays and autograd graph can go now
    return Entry(key, capture, program), program.wrap(outputs)


class TracedFunction:
    """What `distrain.jit.trace` returns: call it like the function (see the module docstring).

    Attributes:
        function: the traced module or function.
        example_inputs: the inputs it was traced with.
        graph: the graph of the latest capture (`graph.instructions`, `graph.values`).
        code: the generated Python source of the latest capture's replay.
    """

    def __init__(self, function, example_inputs, example_kwargs=None, *, verify=True, retrace=True,
                 max_graphs=DEFAULT_MAX_GRAPHS, passes=None, modules=None):
        self.function = function
        self.example_inputs = example_inputs
        self.verify = verify
        self.retrace = retrace
        self.max_graphs = int(max_graphs)
        self.passes = passes
        self.modules = list(modules) if modules is not None else modules_in(function)
        self._mode_modules = [module for _, module in named_modules_of(self.modules)]
        self._entries = {}
        self._latest = None
        self._lock = threading.Lock()
        self.captures = 0
        self.last_result = self._capture(example_inputs, example_kwargs or {})  # the eager run's result

    def _key(self, args, kwargs):
        """The guard key of a call (guards.input_key) and the modules' training flags: each mode its own graph."""
        key, leaves = input_key(args, kwargs)
        return key + (tuple(module.training for module in self._mode_modules),), leaves

    def _capture(self, args, kwargs):
        key, _ = self._key(args, kwargs)
        entry, result = capture_entry(self.function, args, kwargs, self.modules, key, self.verify, self.passes)
        self._entries[key] = self._latest = entry
        self.captures += 1
        return result

    def __call__(self, *args, **kwargs):
        with self._lock:  # one call at a time: a replay writes into buffers allocated once for the graph
            key, leaves = self._key(args, kwargs)
            entry = self._entries.get(key)
            if entry is not None and entry.guard.holds():
                return entry.program.run(leaves)
            return self._miss(key, entry, args, kwargs)

    def _miss(self, key, entry, args, kwargs):
        if entry is not None:  # the model changed under this graph (it may change back: kept unless retracing)
            reasons = entry.guard.differences()
        else:
            reasons = describe_key_difference(self._latest.key, key) if self._latest is not None else []
        if not self.retrace:
            raise GuardError("distrain.jit: this call differs from the captured one, and retracing is off "
                             "(retrace=False):\n  - " + "\n  - ".join(reasons or ["(no difference found)"]))
        if entry is not None:
            del self._entries[key]
        if len(self._entries) >= self.max_graphs:
            raise GuardError(f"distrain.jit: {self.max_graphs} graphs are captured already (max_graphs) and this call "
                             "needs another:\n  - " + "\n  - ".join(reasons or ["(no difference found)"]) +
                             "\nShapes that change every call defeat static capture: pad inputs to a few fixed "
                             "shapes (e.g. drop_last=True in the DataLoader), or raise max_graphs.")
        return self._capture(args, kwargs)

    @property
    def graph(self):
        return self._latest.capture.graph

    @property
    def program(self):
        return self._latest.program

    @property
    def code(self) -> str:
        return self._latest.program.source

    @property
    def graphs(self) -> int:
        """How many graphs are cached (one per distinct input signature)."""
        return len(self._entries)

    def save(self, path):
        """Write the latest graph and its weights to `path`; `distrain.jit.load(path)` runs it without this
        code (NOTE [ Saved graph format ] in serialization.py)."""
        from .serialization import save

        save(self, path)
