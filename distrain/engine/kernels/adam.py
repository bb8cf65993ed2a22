"""Adam's update as one compiled pass over the parameters, instead of a dozen NumPy passes.

Adam's array code (optim/adam.py) runs about twelve whole-array operations per step,
each reading and writing the parameters, the gradient or the moments again. The
compiled loop reads each element once and writes it once. Measured on the 2-core AMD
EPYC (Zen 2, AVX2), one step over the 1.86M float32 parameters of the 784-1024-1024-10
MLP at 1 thread: 1.6 ms, against 5.1 ms for the array code in cache-sized blocks
(NOTE [ Optimizer chunks ]) and 11 ms for it in one pass over the buffer. The loop is
bound by its square root and two divisions (8 lanes at a time), not by memory: still
cutting it into the optimizer's 1 MiB blocks costs under 0.1 ms, so it keeps them; a
second thread (the blocks spread over the engine's threads; the loop releases the
GIL) gained nothing measurable on the shared machine.

The array code is this kernel's NumPy reference: it runs where the loop does not apply
(kernels/in_place.py: CuPy arrays, DISTRAIN_KERNELS=numpy, no numba, float16,
non-contiguous arrays) and the tests compare the two bit for bit. The loop performs the
reference's operations in its order, with every Python-float hyperparameter rounded to
the arrays' dtype as NumPy rounds a Python float in `float32_array * 0.9` (NEP 50).

Unlike the other kernels (NOTE [ Compiled kernels ]) this one updates its arguments in
place: it runs only inside `Optimizer.step`, which never runs under capture.
"""
from __future__ import annotations

from .in_place import flat, scalars, update_loops


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
        False, having touched nothing, when the loop does not apply (kernels/in_place.py;
        the caller runs Adam's array code); True when it updated the arrays.
    """
    amsgrad = max_exp_avg_sq is not None
    arrays = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq) if amsgrad else (param, grad, exp_avg, exp_avg_sq)
    loops = update_loops("adam_loops", arrays)
    if loops is None:
        return False
    beta1, beta2 = betas
    weight_decay = float(weight_decay)
    decoupled_decay = decoupled_weight_decay and weight_decay != 0.0
    l2_decay = not decoupled_weight_decay and weight_decay != 0.0
    loop = loops.adam_loop(decoupled_decay, l2_decay, bool(maximize), amsgrad)
    values = scalars([1.0 - lr * weight_decay, weight_decay, 1.0 - beta1, beta2, 1.0 - beta2,
                      (1.0 - beta2 ** step) ** 0.5, eps, -(lr / (1.0 - beta1 ** step))], param)
    arrays = flat(arrays)
    # without amsgrad the loop never reads its fifth array: it gets the scalars, an array of the same type
    loop(*arrays[:4], arrays[4] if amsgrad else values, values)
    return True


__all__ = ["adam_update"]
