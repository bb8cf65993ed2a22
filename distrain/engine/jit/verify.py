"""The verifying replay: the first replay runs against the eager capture, and must agree bit for bit.

Capture records what passes through arrays it can see. Something computed behind its
back — a plain NumPy array filled in by Python code, a C extension writing into memory,
an array mutated between two uses by code that is not recorded — would be frozen into
the graph and replayed wrongly, silently. So after capturing, the program replays once
from the state the capture started from (parameters, gradients, buffers, inputs and the
random generators restored) and everything it produces — outputs, state, inputs written
in place, generator states — is compared with what the eager run produced. Any difference
is a CaptureError naming what differs. It costs one extra step at capture; `verify=False`
skips it.
"""
from __future__ import annotations

import numpy

from .. import random as random_module
from .errors import CaptureError
from .recorder import _root


class StateBefore:
    """Copies of everything a capture may change, taken before it runs."""

    def __init__(self, state_tensors, input_arrays):
        roots, self.names = {}, {}
        for name, tensor in state_tensors:
            root = _root(tensor._data)  # the array owning the memory (recorder.py)
            roots.setdefault(id(root), root)
            self.names.setdefault(id(root), name)
        self.roots = list(roots.values())
        self.copies = [root.copy() for root in self.roots]
        self.inputs = list(input_arrays)
        self.input_copies = [array.copy() for array in self.inputs]
        self.generators = {device: generator for device, generator in random_module._default_generators.items()}
        self.generator_states = {device: generator.get_state() for device, generator in self.generators.items()}

    def add_outside_arrays(self, graph, snapshots, generator_states):
        """After capture: the arrays from outside that the graph writes, and the generators it drew from."""
        written = {graph.values[slot].root for instruction in graph.instructions for slot in instruction.writes}
        for slot, snapshot in snapshots.items():
            if slot in written or graph.values[slot].root in written:
                array = graph.constants[slot]
                self.roots.append(array)
                self.copies.append(snapshot)
                self.names[id(array)] = graph.values[slot].name
        for key, (generator, state) in generator_states.items():
            if generator not in self.generators.values():
                self.generators[key] = generator
                self.generator_states[key] = state

    def restore(self):
        for root, copy in zip(self.roots, self.copies):
            root[...] = copy
        for array, copy in zip(self.inputs, self.input_copies):
            if array.flags.writeable:  # a broadcast view is read-only: nothing wrote it
                array[...] = copy
        for device, generator in self.generators.items():
            generator.set_state(self.generator_states[device])

    def now(self):
        """(state copies, input copies, generator states) as they are now."""
        return ([root.copy() for root in self.roots], [array.copy() for array in self.inputs],
                {device: generator.get_state() for device, generator in self.generators.items()})


def verify(before: StateBefore, run_replay, eager_outputs):
    """Replay from `before` and compare with the eager run's results (see the module docstring)."""
    eager_state, eager_inputs, eager_generators = before.now()
    before.restore()
    replay_outputs = run_replay()
    differences = []
    for index, (eager, replayed) in enumerate(zip(eager_outputs, replay_outputs)):
        _compare(f"output {index}", eager, replayed, differences)
    parameters_moved = False
    for root, eager in zip(before.roots, eager_state):
        count = len(differences)
        _compare(f"`{before.names[id(root)]}` (and the state stored with it)", eager, root, differences)
        parameters_moved |= len(differences) > count and not before.names[id(root)].endswith(".grad")
    for index, (array, eager) in enumerate(zip(before.inputs, eager_inputs)):
        _compare(f"input {index} (written in place)", eager, array, differences)
    for device, generator in before.generators.items():
        if _state_key(generator.get_state()) != _state_key(eager_generators[device]):
            differences.append(f"the random generator of {device} advanced differently")
    if parameters_moved:
        differences.append("parameters changed outside the recorded calls: an optimizer's step() inside the traced "
                           "function updates flat buffers the capture does not bind. Capture forward and backward "
                           "with distrain.jit.compile_step(model, loss_fn, optimizer), which runs the optimizer "
                           "after each replay")
    if differences:
        raise CaptureError(
            "distrain.jit: the captured graph does not reproduce the eager run:\n  - " + "\n  - ".join(differences) +
            "\nSomething in the function computed outside the recorded array calls (a NumPy array filled in by "
            "Python code or a library, or changed between two uses), so a replay would silently differ from eager. "
            "Run this function eagerly, or compute that part with tensors; verify=False skips this check.")


def _compare(what, eager, replayed, differences):
    eager, replayed = numpy.asarray(_host(eager)), numpy.asarray(_host(replayed))
    if eager.shape != replayed.shape or eager.dtype != replayed.dtype:
        differences.append(f"{what}: {eager.shape} {eager.dtype} eagerly, {replayed.shape} {replayed.dtype} replayed")
        return
    same = numpy.asarray(eager == replayed)
    if eager.dtype.kind in "fc":
        same = same | (numpy.isnan(eager) & numpy.isnan(replayed))
    if not same.all():
        wrong = int(same.size - same.sum())
        differences.append(f"{what}: {wrong} of {same.size} elements differ")


def _host(array):
    return array.get() if hasattr(array, "get") and not isinstance(array, numpy.ndarray) else array


def _state_key(state):
    return repr(state)
