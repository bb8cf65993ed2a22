"""Adam's update as one compiled pass over the parameters, instead of a dozen NumPy passes.

Adam's array code (optim/adam.py) runs about twelve whole-array operations per step,
each reading and writing the parameters, the gradient or the moments again. The
compiled loop reads each element once and writes it once: 1.3 ms for the 1.86M float32
parameters of the 784-1024-1024-10 MLP, against 11 ms for the array code in one pass
over the buffer and 4.6 ms for it in cache-sized blocks (NOTE [ Optimizer chunks ]).

The array code is this kernel's NumPy reference: it runs where the loop does not apply
(CuPy arrays, DISTRAIN_KERNELS=numpy, no numba, float16, non-contiguous arrays) and the
tests compare the two bit for bit. The loop performs the reference's operations in its
order, with every Python-float hyperparameter rounded to the arrays' dtype as NumPy
rounds a Python float in `float32_array * 0.9` (NEP 50: the array's dtype wins).

Unlike the other kernels (NOTE [ Compiled kernels ]) this one updates its arguments in
place: it runs only inside `Optimizer.step`, which never runs under capture.
"""
from __future__ import annotations

import numpy

from . import compiled_loops

COMPILED_DTYPES = (numpy.dtype("float32"), numpy.dtype("float64"))


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, betas, eps, weight_decay,
                decoupled_weight_decay, maximize):
    """One Adam step over `param` in place, when the compiled loop applies; returns whether it ran.

    Args:
        param, exp_avg, exp_avg_sq, max_exp_avg_sq: written in place (`max_exp_avg_sq`
            None without amsgrad).
        grad: read only.
        step: the step count including this step (1 on the first update).
        lr, betas, eps, weight_decay, decoupled_weight_decay, maximize: the group's values.

    Returns:
        False, having touched nothing, when the loop does not apply (the caller runs
        Adam's array code); True when it updated the arrays.
    """
    arrays = (param, grad, exp_avg, exp_avg_sq) if max_exp_avg_sq is None else \
        (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
    if param.dtype not in COMPILED_DTYPES or any(
            type(array) is not numpy.ndarray or array.dtype != param.dtype or array.shape != param.shape
            or not array.flags.c_contiguous for array in arrays):
        return False
    loops = compiled_loops("adam_loops", *arrays)
    if loops is None:
        return False
    beta1, beta2 = betas
    weight_decay = float(weight_decay)
    decoupled_decay = decoupled_weight_decay and weight_decay != 0.0
    l2_decay = not decoupled_weight_decay and weight_decay != 0.0
    amsgrad = max_exp_avg_sq is not None
    scalar = param.dtype.type  # how NumPy rounds the Python floats of the reference's `array * float`
    loop = loops.adam_loop(decoupled_decay, l2_decay, bool(maximize), amsgrad)
    # without amsgrad the loop never reads `max_exp_avg_sq`: it gets a one-element array of the same type
    unused = numpy.empty(1, param.dtype)
    loop(param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
         (max_exp_avg_sq if amsgrad else unused).reshape(-1),
         scalar(1.0 - lr * weight_decay), scalar(weight_decay), scalar(1.0 - beta1), scalar(beta2),
         scalar(1.0 - beta2), scalar((1.0 - beta2 ** step) ** 0.5), scalar(eps),
         scalar(-(lr / (1.0 - beta1 ** step))))
    return True


__all__ = ["adam_update"]
