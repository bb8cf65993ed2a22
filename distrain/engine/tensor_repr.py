"""How a tensor prints: its values like PyTorch does, then device, dtype and grad_fn when notable."""
from __future__ import annotations

import numpy

from . import dtypes

_IMPLIED_DTYPES = (dtypes.float32, dtypes.int64, dtypes.bool_)


def tensor_repr(tensor) -> str:
    data = tensor._data
    host = data if isinstance(data, numpy.ndarray) else data.get()
    prefix = "tensor("
    if host.size == 0:
        body = "[]" if host.ndim <= 1 else f"[], size={tuple(host.shape)}"
    else:
        body = numpy.array2string(host, separator=", ", prefix=prefix, threshold=1000, edgeitems=3,
                                  precision=4, floatmode="maxprec_equal" if host.dtype.kind == "f" else "maxprec")
    extras = []
    if not isinstance(data, numpy.ndarray):
        extras.append(f"device='{tensor.device}'")
    if host.dtype not in _IMPLIED_DTYPES or host.size == 0:
        extras.append(f"dtype=distrain.{host.dtype.name}")
    if tensor.grad_fn is not None:
        extras.append(f"grad_fn=<{tensor.grad_fn.name()}>")
    elif tensor._requires_grad:
        extras.append("requires_grad=True")
    return prefix + body + "".join(", " + extra for extra in extras) + ")"
