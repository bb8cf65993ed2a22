"""distrain.backends: torch.backends' switches, accepted with their meaning on this engine.

PyTorch programs set library switches before training (`torch.backends.cudnn.benchmark =
True`, `torch.backends.cuda.matmul.allow_tf32 = True`) and ask what the machine has
(`torch.backends.mps.is_available()`). distrain computes on NumPy and CuPy with its own
kernels: it calls neither cuDNN nor Apple's MPS, and its float32 products are full
float32. So the switches are plain settable flags that change no number (each module
says why), and the questions get this engine's true answers. A program written for
PyTorch runs unchanged and learns nothing false.

- `cudnn`: enabled, benchmark, deterministic, allow_tf32, is_available() (False), version(), flags(...)
- `cuda`:  matmul.allow_tf32, matmul.allow_fp16_reduced_precision_reduction, is_built()
- `mps`:   is_available() and is_built() (False: distrain has no Metal backend)
"""
from . import cuda, cudnn, mps

__all__ = ["cuda", "cudnn", "mps"]
