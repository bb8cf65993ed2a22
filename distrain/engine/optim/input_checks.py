"""What an optimizer refuses, and the messages that say why (PyTorch's checks, with the culprit named).

Parameters are named by their position in their param group and their shape, so a user
with fifty parameters can find the one at fault.
"""
from __future__ import annotations

from ...errors import OptimizerError, OptimizerTypeError
from ..tensor import Tensor

__all__ = ["OptimizerError", "OptimizerTypeError", "check_hyperparameters"]

SET_MESSAGE = ("optimizer parameters must be an ordered collection (a list), not a set: the order of a set changes "
               "between runs, and the state dict numbers parameters by their order")

# (group key, what it is called in messages, lowest allowed value)
_LOWER_BOUNDS = [("lr", "learning rate", 0.0), ("momentum", "momentum value", 0.0),
                 ("weight_decay", "weight_decay value", 0.0), ("eps", "epsilon value", 0.0),
                 ("alpha", "alpha value", 0.0), ("lr_decay", "lr_decay value", 0.0),
                 ("initial_accumulator_value", "initial_accumulator_value", 0.0),
                 ("momentum_decay", "momentum_decay value", 0.0)]


def check_hyperparameters(group, where):
    """Raise OptimizerError for a known hyperparameter of `group` out of its range."""
    for key, label, low in _LOWER_BOUNDS:
        if key in group and not low <= group[key]:
            raise OptimizerError(f"Invalid {label}: {group[key]}{where}; {key} must be >= {low}")
    for index, beta in enumerate(group.get("betas", ())):
        if not 0.0 <= beta < 1.0:
            raise OptimizerError(f"Invalid beta parameter at index {index}: {beta}{where}; "
                                 "betas must lie in [0, 1), e.g. (0.9, 0.999)")


def checked_parameters(param_group, index, existing_groups):
    """The list of parameters of a new param group, after checking each one and their overlaps."""
    if not isinstance(param_group, dict):
        raise OptimizerTypeError(f"a param group must be a dict, got {type(param_group).__name__}")
    params = param_group.get("params")
    if isinstance(params, Tensor):
        params = [params]
    elif isinstance(params, (set, frozenset)):
        raise OptimizerTypeError(SET_MESSAGE)
    elif params is None:
        raise OptimizerError(f"param group {index} has no 'params' entry")
    params = list(params)
    if not params:
        raise OptimizerError(f"param group {index} has an empty parameter list")
    seen = {}
    for position, param in enumerate(params):
        check_parameter(param, position, index)
        if id(param) in seen:
            raise OptimizerError(f"parameter {position} of param group {index} (shape {tuple(param.shape)}) is the "
                                 f"same tensor as parameter {seen[id(param)]}; list each parameter once")
        seen[id(param)] = position
    for other_index, other in enumerate(existing_groups):
        for param in other["params"]:
            if id(param) in seen:
                raise OptimizerError(f"parameter {seen[id(param)]} of param group {index} (shape "
                                     f"{tuple(param.shape)}) is already in param group {other_index}; a parameter "
                                     "can belong to one group only")
    return params


def check_parameter(param, position, group_index):
    which = f"parameter {position} of param group {group_index}"
    if not isinstance(param, Tensor):
        raise OptimizerTypeError(f"optimizer can only optimize Tensors, but {which} is a {type(param).__name__}")
    if param.grad_fn is not None:
        raise OptimizerError(f"can't optimize a non-leaf Tensor: {which} (shape {tuple(param.shape)}) was computed by "
                             f"'{param.grad_fn.name()}'; optimize the leaf it comes from, or make it a leaf: "
                             "p = p.detach().requires_grad_()")
    if param.dtype.kind != "f":
        raise OptimizerTypeError(f"{which} (shape {tuple(param.shape)}) has dtype {param.dtype}; optimizers update "
                                 "floating-point tensors only, convert it with .float()")
