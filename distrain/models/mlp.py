"""`mlp`: a multilayer perceptron, the baseline every dataset should beat first."""
from __future__ import annotations

import math

import distrain.nn as nn

from ..errors import ModelError
from . import arguments
from .registry import register


@register("mlp")
def mlp(in_features=None, input_shape=None, hidden=(256, 256), num_classes=10, dropout=0.0):
    """Flatten, then Linear-ReLU-Dropout per width in `hidden`, then a Linear head.

    Args:
        in_features: the number of input features; or give `input_shape` (any shape, e.g.
            (1, 8, 8) for the digits) and it is flattened.
        hidden: the widths of the hidden layers (default (256, 256); () is a linear model).
        num_classes: the number of outputs (logits).
        dropout: the dropout rate after each hidden layer (default 0).

    The Dropout layers are there even at rate 0 (then they do nothing), so the parameter
    names ("1.weight", "4.weight", ...) depend only on `hidden`, and a checkpoint trained
    with dropout loads into a model without it.

    Example::

        >>> model = distrain.models.create("mlp", input_shape=(1, 8, 8), hidden=(64,), num_classes=10)
        >>> model(distrain.randn(5, 1, 8, 8)).shape
        distrain.Size([5, 10])
    """
    name = "mlp"
    if (in_features is None) == (input_shape is None):
        raise ModelError(f"model {name!r}: give exactly one of in_features (a number of features) and input_shape "
                         f"(flattened), got in_features={in_features!r}, input_shape={input_shape!r}")
    width = (arguments.integer(name, "in_features", in_features) if input_shape is None
             else math.prod(arguments.integers(name, "input_shape", input_shape)))
    widths = arguments.integers(name, "hidden", hidden, allow_empty=True)
    num_classes = arguments.integer(name, "num_classes", num_classes)
    rate = arguments.probability(name, "dropout", dropout)
    layers = [nn.Flatten()]
    for out_width in widths:
        layers += [nn.Linear(width, out_width), nn.ReLU(), nn.Dropout(rate)]
        width = out_width
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
