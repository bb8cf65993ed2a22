"""The compiled loop of adam.py (numba; imported only on the numba path, see NOTE [ Compiled kernels ]).

One loop source, specialised per variant: the four switches (decoupled decay, L2 decay,
maximize, amsgrad) are closure constants, so numba compiles a branch-free loop for each
combination that is used, and caches each on disk (numba keys a closure's cache entry by
the values it closes over). Tested as run-time arguments instead, the branches kept LLVM
from vectorising the loop well: 2.5 ms against 1.3 ms for 1.86M float32 parameters.

Every element goes through the operations of Adam's array code (optim/adam.py), in its
order, with each scalar already rounded to the arrays' dtype by the caller, so the
results are the reference's bit for bit (numba does not contract a*b+c into an FMA
without fastmath).
"""
import functools

import numba

from .gradient_loops import decayed_gradient
import numpy


@functools.cache
def adam_loop(decoupled_decay, l2_decay, maximize, amsgrad):
    """The compiled one-pass update for one combination of switches (built and loaded once per process)."""

    @numba.njit(cache=True, error_model="numpy", nogil=True)
    def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, scalars):
        decay_factor, weight_decay, one_minus_beta1, beta2 = scalars[0], scalars[1], scalars[2], scalars[3]
        one_minus_beta2, bias_correction2_sqrt, eps, negative_step_size = scalars[4], scalars[5], scalars[6], scalars[7]
        for index in range(param.size):
            value = param[index]
            if decoupled_decay:
                value = value * decay_factor  # param *= 1 - lr * weight_decay
            g = decayed_gradient(value, grad[index], weight_decay, l2_decay, maximize)
            average = exp_avg[index]
            average = average + (g - average) * one_minus_beta1  # lerp_towards
            exp_avg[index] = average
            square = exp_avg_sq[index] * beta2 + (g * one_minus_beta2) * g
            exp_avg_sq[index] = square
            if amsgrad:  # numpy.maximum(max_exp_avg_sq, exp_avg_sq): a NaN in either wins
                largest = max_exp_avg_sq[index]
                largest = largest if (largest >= square or numpy.isnan(largest)) else square
                max_exp_avg_sq[index] = largest
                square = largest
            denom = numpy.sqrt(square) / bias_correction2_sqrt + eps
            param[index] = value + (average * negative_step_size) / denom

    return adam_update
