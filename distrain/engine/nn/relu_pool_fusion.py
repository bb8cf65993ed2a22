"""ReLU followed by MaxPool2d inside a Sequential, run as max-pool first and ReLU on the pooled output.

NOTE [ ReLU after max-pool ]
ReLU is monotone, so max(relu(window)) == relu(max(window)) for every window: pooling
first gives the same output and, through the max-pool's saved winner, the same
gradient at the same pixel (where the window's maximum is not positive, both send a
zero there). The fused order runs ReLU's forward and backward on the pooled tensor (a
quarter of the size for 2x2 pooling) instead of the convolution's full output, and
skips writing and reading that full-size activation. On the small CNN step (2-core AMD
EPYC, 1 thread) that is ~3 ms of ~45.

The two orders differ in what anyone could observe between the two modules, so the
fusion happens only where nothing can: inside a Sequential (the ReLU's output goes
only to the next module), for exactly these two classes (a subclass may override
forward), neither with forward hooks, a max-pool that does not return indices (with
all-negative windows the indices would differ), and a ReLU that is not in-place unless
the module before it is one whose output is a new tensor nobody else holds (in-place on
the Sequential's own input would change the caller's tensor). The only bit-level
difference is the sign of a zero gradient: where the window's maximum is negative, the
fused order adds g * 0 (which is -0.0 for negative g) onto +0.0 and keeps +0.0.
"""
from __future__ import annotations

from .activation import ReLU
from .conv import Conv2d
from .linear import Linear
from .normalization import BatchNorm2d
from .pooling import MaxPool2d

_FRESH_OUTPUT = (Conv2d, Linear, BatchNorm2d)  # modules whose output is a new tensor nobody else holds


def fuses(relu, pool, previous):
    """Whether the pair (`relu`, `pool`) of a Sequential, after `previous` (or None), may run pool first."""
    if type(relu) is not ReLU or type(pool) is not MaxPool2d or pool.return_indices:
        return False
    if relu._forward_hooks or relu._forward_pre_hooks or pool._forward_hooks or pool._forward_pre_hooks:
        return False
    if relu.inplace:
        return (previous is not None and type(previous) in _FRESH_OUTPUT
                and not previous._forward_hooks and not previous._forward_pre_hooks)
    return True


def pool_then_relu(relu, pool, input):
    """relu(pool(input)): what `relu` then `pool` compute (NOTE [ ReLU after max-pool ]).

    Both run as the modules they are (an in-place ReLU then writes into the pooled
    tensor, which is new), so whatever patches modules (ONNX export) sees both.
    """
    return relu(pool(input))


__all__ = ["fuses", "pool_then_relu"]
