"""The single-process engine: tensors, autograd, ops (and, later, nn, optim, flat buffers)."""
from .host_memory import keep_freed_host_memory

keep_freed_host_memory()

from . import ops  # noqa: E402  (binds the op methods onto Tensor)
from .tensor import Size, Tensor  # noqa: E402
