"""torch.backends.cudnn's flags: accepted, and inert because distrain never calls cuDNN.

distrain's convolutions are im2col plus one matrix product (cuBLAS on a GPU), whose
algorithm does not depend on these flags and whose result is the same from run to run,
so in PyTorch's terms distrain always behaves as `benchmark = False, deterministic =
True`. The flags keep the values a program assigns, so code that sets and later reads
them works:

- enabled (True): PyTorch would use cuDNN where it can; here no effect.
- benchmark (False): PyTorch would time several convolution algorithms per input shape;
  here no effect (there is one algorithm).
- deterministic (False): PyTorch would pick only reproducible cuDNN algorithms; distrain's
  convolutions are reproducible either way. See `distrain.use_deterministic_algorithms`
  for the whole-engine switch.
- allow_tf32 (True): PyTorch may compute convolutions in TF32 on Ampere GPUs; distrain
  computes them in the tensor's dtype.

Example::

    >>> import distrain.backends.cudnn as cudnn
    >>> cudnn.benchmark = True        # accepted; convolutions stay as they are
    >>> cudnn.is_available()
    False
"""
from __future__ import annotations

import contextlib

enabled = True
benchmark = False
deterministic = False
allow_tf32 = True

_FLAGS = ("enabled", "benchmark", "deterministic", "allow_tf32")


def is_available() -> bool:
    """False: distrain does not use cuDNN (its convolutions are its own GEMM-based kernels)."""
    return False


def version():
    """None, as PyTorch answers where cuDNN is not available."""
    return None


@contextlib.contextmanager
def flags(enabled=False, benchmark=False, deterministic=False, allow_tf32=True, **ignored):
    """Set the flags inside a `with` block and restore them after, like `torch.backends.cudnn.flags`."""
    module = globals()
    previous = {name: module[name] for name in _FLAGS}
    module.update(enabled=enabled, benchmark=benchmark, deterministic=deterministic, allow_tf32=allow_tf32)
    try:
        yield
    finally:
        module.update(previous)
