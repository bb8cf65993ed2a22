"""An optimizer as plain values, so that a parameter server can run it (asynchronous mode).

In asynchronous mode the servers hold the parameters and run the optimizer (NOTE [ Stale
synchronous parallel ] in stale_synchronous.py). The ranks build their optimizer as usual
(`distrain.optim.Adam(model.parameters(), lr=...)`); at its first step a rank describes it
in plain values (`describe`) and the server builds the same class from the description
(`build`). Nothing is imported or unpickled by name: only the classes in SERVABLE can be
named, and each class's own checks validate the hyperparameters, so a malformed description
is refused with a ProtocolError naming what is wrong.

Why the server may merge a shard's parameters into one per param group: every servable
rule is elementwise (the same arithmetic on each element, with per-parameter step counts
that advance together), so updating a run of elements as one parameter gives the same bits
as updating each parameter on its own, which is also what the ranks' own optimizers do over
their flat buffers (NOTE [ Optimizer chunks ] in engine/optim/chunks.py). LBFGS is not
servable: it needs a closure that recomputes the loss, which only a rank can run.
"""
from __future__ import annotations

import math

from .protocol import ProtocolError

MAX_GROUPS = 64  # param groups an optimizer may have in asynchronous mode
MAX_RUNS = 256  # runs of one group's elements in one shard


def servable():
    """{class name: class} of the optimizers a server may run (imported when first needed: the server of a
    synchronous job never loads the engine)."""
    from ...engine import optim

    return {cls.__name__: cls for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.Adagrad, optim.Adadelta,
                                          optim.Adamax, optim.NAdam, optim.RAdam, optim.RMSprop)}


def hyperparameters(optimizer):
    """Each param group's hyperparameters as plain values (what a push carries, for learning-rate schedules)."""
    names = sorted(optimizer.defaults)
    return [{name: _plain(group[name], name) for name in names} for group in optimizer.param_groups]


def describe(optimizer, flats):
    """(class name, hyperparameters per group, {id(parameter): its group} for the parameters of `flats`).

    Raises a DistrainError naming the problem when the optimizer cannot be served: an
    unknown class, or parameters other than the model's (every parameter of the model must
    be in exactly one group, and nothing else).
    """
    from ...errors import DistrainError

    name = type(optimizer).__name__
    if servable().get(name) is not type(optimizer):
        raise DistrainError(f"asynchronous parameter-server training runs the optimizer on the servers, which can run "
                            f"{', '.join(sorted(servable()))}; got {name}. Use one of those (or --ps-mode sync)")
    if len(optimizer.param_groups) > MAX_GROUPS:
        raise DistrainError(f"asynchronous parameter-server training: the optimizer has {len(optimizer.param_groups)} "
                            f"param groups, at most {MAX_GROUPS} can be served")
    group_of = {}
    for number, group in enumerate(optimizer.param_groups):
        for param in group["params"]:
            if param.requires_grad:  # a frozen one is never updated: nothing of it is served
                group_of[id(param)] = number
    served = [param for flat in flats for param, _, _ in flat.segments()]
    missing = [index for index, param in enumerate(served) if id(param) not in group_of]
    if missing or len(group_of) != len(served):
        raise DistrainError(
            f"asynchronous parameter-server training: the optimizer must hold exactly the model's parameters "
            f"({len(served)} of them; it holds {len(group_of)}"
            + (f", and not parameter {missing[0]} of the model" if missing else "") +
            "): build it from model.parameters() after wrapping the model in DistributedDataParallel")
    return name, hyperparameters(optimizer), group_of


def _plain(value, name):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tuple) and all(isinstance(item, (int, float)) for item in value):
        return list(value)
    if hasattr(value, "item") and getattr(value, "size", None) == 1:  # a 0-d array or tensor learning rate
        return float(value.item())
    from ...errors import DistrainError

    raise DistrainError(f"asynchronous parameter-server training: hyperparameter {name!r} is a "
                        f"{type(value).__name__}; a served optimizer's hyperparameters must be numbers, booleans, "
                        "strings or tuples of numbers")


def check_groups(groups, defaults, where):
    """The groups' hyperparameters as the optimizer takes them; ProtocolError for a wrong set or type."""
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_GROUPS:
        raise ProtocolError(f"{where}: groups must be a list of 1..{MAX_GROUPS} maps")
    checked = []
    for number, group in enumerate(groups):
        if not isinstance(group, dict) or set(group) != set(defaults):
            raise ProtocolError(f"{where}: param group {number} must name exactly the hyperparameters "
                                f"{sorted(defaults)}, got {sorted(group) if isinstance(group, dict) else group!r}")
        values = {}
        for name, value in group.items():
            if isinstance(value, list):
                if not all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value) or \
                        len(value) > 8:
                    raise ProtocolError(f"{where}: hyperparameter {name!r} of param group {number} is a list of "
                                        f"{value!r:.80}; only short lists of numbers are")
                value = tuple(value)
            elif not (isinstance(value, (bool, int, float, str)) or value is None):
                raise ProtocolError(f"{where}: hyperparameter {name!r} of param group {number} is "
                                    f"{type(value).__name__}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ProtocolError(f"{where}: hyperparameter {name!r} of param group {number} is {value}")
            # of the default's kind: the class's own checks test ranges, not kinds, and a wrong kind that passes
            # them (betas of one number, a string for a flag) would fail, or mean something else, in the step
            default = defaults[name]
            if isinstance(default, tuple) and not (isinstance(value, tuple) and len(value) == len(default)):
                raise ProtocolError(f"{where}: hyperparameter {name!r} of param group {number} must be "
                                    f"{len(default)} numbers (as {default}), got {group[name]!r:.80}")
            if isinstance(default, (bool, int, float)) and not isinstance(value, (bool, int, float)):
                raise ProtocolError(f"{where}: hyperparameter {name!r} of param group {number} must be a number, "
                                    f"got {group[name]!r:.80}")
            values[name] = value
        checked.append(values)
    return checked


def build(name, groups, runs, parameters_of_run):
    """The optimizer `name` over the runs of a shard: `runs` is [(start, stop, group)], `parameters_of_run(i)`
    the Parameter viewing run i. ProtocolError for an unknown class or hyperparameters it refuses."""
    classes = servable()
    if name not in classes:
        raise ProtocolError(f"optimizer {name!r} cannot be served; one of {sorted(classes)}")
    cls = classes[name]
    try:
        probe = cls([_probe_parameter()])  # the class's own defaults: the names a group must carry
    except Exception as error:  # a class that cannot even be built with its defaults is not servable
        raise ProtocolError(f"optimizer {name!r} cannot be built: {error}") from None
    groups = check_groups(groups, probe.defaults, f"optimizer {name}")
    param_groups = []
    for number, values in enumerate(groups):
        members = [parameters_of_run(index) for index, run in enumerate(runs) if run[2] == number]
        if members:
            param_groups.append({"params": members, **values})
    try:
        optimizer = cls(param_groups)
    except Exception as error:  # the class's checks (OptimizerError, TypeError, ValueError) name the value
        raise ProtocolError(f"optimizer {name}: {error}") from None
    group_numbers = sorted({run[2] for run in runs})
    return optimizer, group_numbers


def set_hyperparameters(optimizer, group_numbers, groups, where):
    """Apply a push's hyperparameters (a learning-rate schedule moves them) to the served groups."""
    groups = check_groups(groups, optimizer.defaults, where)
    if len(groups) <= max(group_numbers):
        raise ProtocolError(f"{where}: the push names {len(groups)} param groups, the optimizer was served with more")
    for group, number in zip(optimizer.param_groups, group_numbers):  # all checked before any is applied
        fixed = [name for name, value in groups[number].items()
                 if not _moves(value) and not _moves(group[name]) and value != group[name]]
        if fixed:
            name = fixed[0]
            raise ProtocolError(f"{where}: hyperparameter {name!r} of param group {number} changed from "
                                f"{group[name]!r} to {groups[number][name]!r}; during training only numbers (the "
                                "learning rate, momentum, betas, weight decay) may change, as a schedule moves them")
        try:
            optimizer._check_group({**group, **groups[number]}, f" (param group {number})")
        except Exception as error:
            raise ProtocolError(f"{where}: {error}") from None
    for group, number in zip(optimizer.param_groups, group_numbers):
        group.update(groups[number])


def _moves(value):
    """A hyperparameter a schedule may move: a number or a tuple of numbers, not a flag, a string or None."""
    if isinstance(value, tuple):
        return all(_moves(item) for item in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _probe_parameter():
    from ...engine.nn.parameter import Parameter
    from ...engine.tensor import _make
    import numpy

    return Parameter(_make(numpy.zeros(1, numpy.float32)))
