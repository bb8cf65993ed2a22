"""What the optimizers' compiled loops (adam_loops.py, sgd_loops.py) share (numba; numba path only).

Inlined into each loop, where `l2_decay` and `maximize` are the loop's closure constants,
so the branches fold away as if written there.
"""
import numba


@numba.njit(inline="always", error_model="numpy")
def decayed_gradient(value, g, weight_decay, l2_decay, maximize):
    """One element's gradient as Chunk.grad_with makes it: L2 decay (value * weight_decay, then -/+ g), else -g
    under maximize, else g."""
    if l2_decay:
        decay = value * weight_decay
        return decay - g if maximize else decay + g
    return -g if maximize else g
