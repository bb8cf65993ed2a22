"""torch.backends.cuda's switches: `matmul.allow_tf32` and friends, accepted and inert.

PyTorch lets float32 matrix products use TF32 (10-bit mantissas) on Ampere GPUs when
`torch.backends.cuda.matmul.allow_tf32 = True`. distrain's products run through CuPy,
which computes float32 in full float32 (CuPy's own switch is the CUPY_TF32=1 environment
variable, read when CuPy starts), so these flags keep what a program assigns and change no
number.
"""
from __future__ import annotations

import importlib.util
import types

matmul = types.SimpleNamespace(allow_tf32=False, allow_fp16_reduced_precision_reduction=True,
                               allow_bf16_reduced_precision_reduction=True)


def is_built() -> bool:
    """True when CuPy is installed (distrain's CUDA support; whether a GPU is usable is `distrain.cuda.is_available()`)."""
    return importlib.util.find_spec("cupy") is not None
