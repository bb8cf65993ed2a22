"""`gradcheck`: compare a function's analytical gradients with finite differences in float64."""
from __future__ import annotations

import numpy

from ...errors import AutogradError
from ..backend import array_module


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Check the gradients of `fn` at `inputs` against central finite differences.

    Every input that requires grad must be float64 (float32's 7 digits cannot resolve a
    difference quotient). For each such input element the numerical derivative of every
    output element is computed and compared with the gradient backward produces for the
    matching unit output gradient.

    Returns True when all match; otherwise raises an AutogradError naming the input, the
    element and both values (or returns False with raise_exception=False).
    """
    from ..tensor import Tensor, _make
    from .api import grad as autograd_grad
    from . import grad_mode

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    differentiable = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    for i in differentiable:
        if inputs[i].dtype != numpy.float64:
            raise AutogradError(f"gradcheck needs float64 inputs; input {i} has dtype {inputs[i].dtype}. Use x.double().")

    def outputs_of(args):
        result = fn(*args)
        return (result,) if isinstance(result, Tensor) else tuple(result)

    with grad_mode.enable_grad():
        outputs = outputs_of(inputs)
    for out_index, out in enumerate(outputs):
        if not out.requires_grad:
            continue
        flat_out = out._data.reshape(-1)
        for out_element in range(flat_out.size):
            seed = numpy.zeros(flat_out.size)
            seed[out_element] = 1.0
            seed_tensor = _make(array_module(out._data).asarray(seed.reshape(out._data.shape), dtype=out.dtype))
            with grad_mode.enable_grad():
                analytical = autograd_grad(out, [inputs[i] for i in differentiable], seed_tensor,
                                           retain_graph=True, allow_unused=True)
            for position, i in enumerate(differentiable):
                x = inputs[i]._data  # perturbed in place, element by element (views of it see it too)
                got = analytical[position]
                got = numpy.zeros(x.size) if got is None else numpy.asarray(got.__array__()).reshape(-1)
                for element in range(x.size):
                    where = numpy.unravel_index(element, x.shape)
                    original = x[where].item()
                    x[where] = original + eps
                    with grad_mode.no_grad():
                        plus = outputs_of(inputs)[out_index]._data.reshape(-1)[out_element].item()
                    x[where] = original - eps
                    with grad_mode.no_grad():
                        minus = outputs_of(inputs)[out_index]._data.reshape(-1)[out_element].item()
                    x[where] = original
                    numerical = (plus - minus) / (2 * eps)
                    if abs(numerical - got[element]) > atol + rtol * abs(numerical):
                        if raise_exception:
                            raise AutogradError(
                                f"gradcheck: d output[{out_index}][{out_element}] / d input[{i}][{element}] is "
                                f"{got[element]!r} by backward but {numerical!r} by finite differences"
                            )
                        return False
    return True
