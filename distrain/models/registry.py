"""The name -> builder table behind `distrain.models.create`, and the checks every request passes.

A builder is a class or function that takes keyword arguments and returns an `nn.Module`.
`create` looks the name up and checks the keyword arguments against the builder's own
signature before calling it, so a typo in a config file ("widht") is reported as "model
'cnn' has no argument 'widht'" with the accepted names, not as a TypeError from deep inside
a constructor. The checks of argument *values* live beside each model (models/arguments.py).
"""
from __future__ import annotations

import inspect

from ..engine.nn import Module
from ..errors import ModelError

_BUILDERS = {}


def register(name):
    """Decorator: make a builder (a Module class or a function returning a Module) creatable by `name`.

    Example::

        >>> @distrain.models.register("tiny")
        ... def tiny(num_classes=10):
        ...     return distrain.nn.Linear(64, num_classes)
        >>> distrain.models.create("tiny", num_classes=3)
        Linear(in_features=64, out_features=3, bias=True)
    """
    if not isinstance(name, str) or not name:
        raise ModelError(f"register: a model name must be a non-empty string, got {name!r}")

    def decorate(builder):
        if not callable(builder):
            raise ModelError(f"register({name!r}): {builder!r} is not callable; decorate a Module class or a "
                             "function that returns a Module")
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ModelError(f"register: the name {name!r} is already taken by {_describe(_BUILDERS[name])}; "
                             "choose another name")
        _BUILDERS[name] = builder
        return builder

    return decorate


def names():
    """The registered model names, sorted."""
    return sorted(_BUILDERS)


def create(name, **kwargs):
    """Build the model registered as `name` with the given keyword arguments; returns an `nn.Module`.

    Raises ModelError for an unknown name (listing the registered ones), an argument the
    model does not take or a required one left out (listing its arguments), or a value the
    model refuses (naming the argument and what it accepts).
    """
    builder = _builder(name)
    parameters, takes_any = _keyword_parameters(builder)
    if not takes_any:  # a builder with **kwargs checks its own
        accepted = [p.name for p in parameters]
        unknown = [key for key in kwargs if key not in accepted]
        if unknown:
            raise ModelError(f"model {name!r} has no argument {unknown[0]!r}; it accepts: {', '.join(accepted)}")
        missing = [p.name for p in parameters if p.default is p.empty and p.name not in kwargs]
        if missing:
            raise ModelError(f"model {name!r} needs the argument {missing[0]!r} (it accepts: {', '.join(accepted)})")
    model = builder(**kwargs)
    if not isinstance(model, Module):
        raise ModelError(f"model {name!r}: its builder {_describe(builder)} returned a {type(model).__name__}, "
                         "not a distrain.nn.Module")
    return model


def arguments_of(name):
    """The named keyword arguments model `name` takes, in its builder's order (a tuple of str).

    A trainer uses it to pass what it knows about the data (`input_shape`, `num_classes`)
    only to models that take it, e.g. not to a user's model with a fixed input size. A
    builder that also takes **kwargs is asked only by name: it gets what it names.
    """
    parameters, _ = _keyword_parameters(_builder(name))
    return tuple(p.name for p in parameters)


def _builder(name):
    if name not in _BUILDERS:
        raise ModelError(f"unknown model {name!r}; registered models: {', '.join(names())} "
                         "(add your own with @distrain.models.register(name))")
    return _BUILDERS[name]


def _keyword_parameters(builder):
    """(the builder's parameters that can be given by name, whether it also takes **kwargs)."""
    parameters = inspect.signature(builder).parameters.values()
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _describe(builder):
    return f"{getattr(builder, '__module__', '?')}.{getattr(builder, '__qualname__', repr(builder))}"
