"""The compiled loop of sgd.py (numba; imported only on the numba path, see NOTE [ Compiled kernels ]).

As adam_loops.py: one loop source whose switches (L2 decay, maximize, momentum, the
first step's buffer, dampening, Nesterov) are closure constants, so numba compiles and
caches one branch-free loop per combination that is used. Each element goes through the
operations of SGD's array code (optim/sgd.py) in its order, with the scalars rounded
to the arrays' dtype by the caller: the results are the reference's bit for bit.
"""
import functools

import numba

from .gradient_loops import decayed_gradient


@functools.cache
def sgd_loop(l2_decay, maximize, momentum, first_step, dampened, nesterov):
    """The compiled one-pass update for one combination of switches (built and loaded once per process)."""

    @numba.njit(cache=True, error_model="numpy", nogil=True)
    def sgd_update(param, grad, momentum_buffer, scalars):
        weight_decay, momentum_factor, one_minus_dampening, negative_lr = scalars[0], scalars[1], scalars[2], \
            scalars[3]
        for index in range(param.size):
            value = param[index]
            g = decayed_gradient(value, grad[index], weight_decay, l2_decay, maximize)
            if momentum:
                if first_step:  # the buffer starts as the gradient
                    buffer = g
                elif dampened:
                    buffer = momentum_buffer[index] * momentum_factor + g * one_minus_dampening
                else:
                    buffer = momentum_buffer[index] * momentum_factor + g
                momentum_buffer[index] = buffer
                g = g + buffer * momentum_factor if nesterov else buffer
            param[index] = value + g * negative_lr

    return sgd_update
