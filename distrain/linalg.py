"""distrain.linalg: the torch.linalg functions distrain computes (norms and matrix products).

Example::

    >>> distrain.linalg.norm(distrain.tensor([3.0, 4.0]))
    tensor(5.)
"""
from .engine.ops.linalg import matmul
from .engine.ops.norms import matrix_norm, norm, vector_norm

__all__ = ["matmul", "matrix_norm", "norm", "vector_norm"]
