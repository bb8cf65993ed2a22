"""What a PyTorch pickle may call, and how its tensors are rebuilt from storages as distrain tensors.

`torch.save` pickles a tensor as a call `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, hooks)` whose storage is a persistent id, ("storage", torch.FloatStorage,
key, location, numel): the bytes live outside the pickle (a zip record, or after the pickle in the
legacy format), and every tensor viewing one storage (tied weights, a transpose, a row) names the
same key. Here the same names are answered by distrain's own functions: a storage is read once,
placed once (map_location) and each tensor is a strided view of it, so views share memory as they
did in PyTorch. `TORCH_GLOBALS` is the allow-list, PyTorch's `weights_only=True` rule.

Values a pickle names without calling them stay immutable (NOTE [ Nothing a pickle touches is
ours to change ] in restricted_unpickler.py): a dtype (`torch.float16`) loads as its name,
"float16", which every distrain function taking a dtype accepts and `distrain.float16 == "float16"`;
a `torch.device` loads as its name, "cuda:0"; a `torch.Size` as a tuple.

bfloat16: NumPy has no bfloat16, so bfloat16 storages load as float32 (exact: bfloat16 is the top
half of a float32). Attributes set on a Parameter in Python (`_rebuild_parameter_with_state`) are
not restored: only values are.
"""
from __future__ import annotations

import math

import numpy

from ..engine import backend
from ..engine.factories import as_tensor
from ..engine.nn.parameter import Parameter
from .format import error
from .restricted_unpickler import PLAIN_GLOBALS

# PyTorch's dtype names -> the NumPy dtype of their bytes; bfloat16's bytes are read as uint16 and widened.
BYTES_DTYPES = {
    "float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<u2",
    "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?",
    "uint16": "<u2", "uint32": "<u4", "uint64": "<u8", "complex64": "<c8", "complex128": "<c16",
}
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
                  "short": "int16", "cfloat": "complex64", "cdouble": "complex128"}
_STORAGE_DTYPES = {  # legacy typed storage classes, still what torch.save names for a tensor's storage
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
UNSUPPORTED = {  # allowed by PyTorch's weights_only, but holding tensors distrain cannot represent
    **{f"torch._utils.{name}": what for name, what in [
        ("_rebuild_qtensor", "a quantized tensor"), ("_rebuild_sparse_tensor", "a sparse tensor"),
        ("_rebuild_nested_tensor", "a nested tensor"), ("_rebuild_meta_tensor_no_storage", "a meta tensor"),
        ("_rebuild_wrapper_subclass", "a tensor subclass"), ("_rebuild_device_tensor_from_numpy", "an XLA tensor"),
        ("_rebuild_device_tensor_from_cpu_tensor", "an XLA/MTIA tensor")]},
    **{f"torch.{name}": "a quantized tensor" for name in ("QInt8Storage", "QUInt8Storage", "QInt32Storage",
                                                           "QUInt4x2Storage", "QUInt2x4Storage")},
    "torch.serialization._get_layout": "a sparse tensor",
}


class StorageRef(tuple):
    """A storage a pickle referred to: (storages, key, dtype name, location, numel, element offset).

    A tuple, so a forged BUILD cannot change it; its array is read and placed on first use."""

    __slots__ = ()

    def array(self, dtype_name=None):
        storages, key, storage_dtype, location, numel, offset = self
        return storages.array(key, dtype_name or storage_dtype, location)[offset:offset + numel]


class Storages:
    """The storages of one file: each read once (by `read_bytes(key, nbytes)`), widened if
    bfloat16, placed by map_location, and shared by every tensor that views it."""

    def __init__(self, name, read_bytes, placement):
        self.name, self.read_bytes, self.placement = name, read_bytes, placement
        self.declared = {}  # key -> (dtype name, numel) as the pickle first declared it
        self.placed = {}  # (key, dtype name) -> 1-D array on its device

    def reference(self, persistent_id):
        """The persistent_load of a PyTorch pickle: ("storage", type, key, location, numel[, view])."""
        if not (isinstance(persistent_id, tuple) and len(persistent_id) in (5, 6) and persistent_id[0] == "storage"):
            raise error(self.name, f"holds a persistent reference {persistent_id!r:.100} that is not a PyTorch "
                                   "storage; it is damaged or not a PyTorch file")
        _, dtype_name, key, location, numel, *view = persistent_id
        if not (dtype_name in BYTES_DTYPES and isinstance(key, str) and isinstance(location, str)
                and type(numel) is int and numel >= 0):
            raise error(self.name, f"holds a malformed storage reference {persistent_id!r:.160}")
        declared = self.declared.setdefault(key, (dtype_name, numel))
        if declared != (dtype_name, numel):
            raise error(self.name, f"declares storage {key!r} twice, as {declared} and as {(dtype_name, numel)}")
        view = view[0] if view else None
        if view is None:
            return StorageRef((self, key, dtype_name, location, numel, 0))
        # Before PyTorch 0.4, a storage could be a view (view key, element offset, size) of a root storage.
        if not (isinstance(view, tuple) and len(view) == 3 and type(view[1]) is int and type(view[2]) is int
                and 0 <= view[1] and view[1] + view[2] <= numel):
            raise error(self.name, f"holds a malformed storage view {view!r:.100} of storage {key!r}")
        return StorageRef((self, key, dtype_name, location, view[2], view[1]))

    @staticmethod
    def itemsize(dtype_name):
        return numpy.dtype(BYTES_DTYPES[dtype_name]).itemsize

    def array(self, key, dtype_name, location):
        placed = self.placed.get((key, dtype_name))
        if placed is None:
            stored_dtype, numel = self.declared[key]
            host = self.read_bytes(key, numel * self.itemsize(stored_dtype))
            dtype = numpy.dtype(BYTES_DTYPES[dtype_name])
            if host.nbytes % dtype.itemsize:
                raise error(self.name, f"views storage {key!r} of {host.nbytes} bytes as {dtype_name}, whose "
                                       f"{dtype.itemsize}-byte elements do not fit it")
            host = host.view(dtype)
            if dtype_name == "bfloat16":  # the top 16 bits of a float32: widening is exact
                host = (host.astype(numpy.uint32) << 16).view(numpy.float32)
            placed = self.placed[(key, dtype_name)] = self.placement.place(host, location, f"storage {key!r}")
        return placed


def _strided_view(storage, offset, size, stride, dtype_name=None):
    """The tensor PyTorch's `_rebuild_tensor` makes: `size`/`stride` (in elements) from `offset` in `storage`."""
    if not isinstance(storage, StorageRef):
        raise TypeError(f"a tensor's storage must be a storage reference, not {type(storage).__name__}")
    flat = storage.array(dtype_name)
    size, stride = tuple(size), tuple(stride)
    if not (type(offset) is int and offset >= 0 and len(size) == len(stride) <= 64
            and all(type(n) is int and n >= 0 for n in size + stride)):
        raise error(storage[0].name, f"holds a tensor with malformed geometry: offset {offset!r:.40}, size "
                                     f"{size!r:.100}, stride {stride!r:.100}")
    if math.prod(size) == 0:
        return as_tensor(flat[:0].reshape(size))
    last = offset + sum((n - 1) * step for n, step in zip(size, stride))
    if last >= flat.size:
        raise error(storage[0].name, f"holds a tensor of size {size} and stride {stride} from offset {offset} "
                                     f"that reaches past the {flat.size} elements of its storage {storage[1]!r}")
    xp = backend.array_module(flat)
    view = xp.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                           strides=tuple(step * flat.itemsize for step in stride))
    return as_tensor(view)


def _finish(tensor, requires_grad, metadata=None):
    """Apply what `_rebuild_tensor_v2` sets after the view: requires_grad and the conj/neg bits."""
    if metadata:
        if not isinstance(metadata, dict) or not set(metadata) <= {"conj", "neg"}:
            raise TypeError(f"tensor metadata {metadata!r:.80} is not PyTorch's conj/neg bits")
        array = tensor._data
        array = array.conj() if metadata.get("conj") else array
        tensor = as_tensor(-array if metadata.get("neg") else array.copy())
    if requires_grad is not False:
        tensor.requires_grad_(bool(requires_grad))
    return tensor


def _rebuild_tensor(storage, offset, size, stride):
    return _strided_view(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks, metadata=None):
    return _finish(_strided_view(storage, offset, size, stride), requires_grad, metadata)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if dtype not in BYTES_DTYPES:
        raise TypeError(f"_rebuild_tensor_v3 needs a dtype name, got {dtype!r:.40}")
    return _finish(_strided_view(storage, offset, size, stride, dtype), requires_grad, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_from_type_v2(function, new_type, args, state):
    """A tensor pickled with its Python type: a Tensor or a Parameter (a subclass is refused by name)."""
    if new_type not in ("torch.Tensor", "torch.nn.parameter.Parameter"):
        raise TypeError(f"_rebuild_from_type_v2 of {new_type!r:.60}")
    tensor = function(*args)
    return _rebuild_parameter(tensor, tensor.requires_grad, None) if new_type.endswith("Parameter") else tensor


def _device(kind, index=None):
    """A torch.device as its name ("cpu", "cuda:0")."""
    if not isinstance(kind, str) or not (index is None or type(index) is int):
        raise TypeError(f"torch.device({kind!r:.40}, {index!r:.20})")
    return kind if index is None else f"{kind}:{index}"


def _size(dimensions=()):
    return tuple(int(n) for n in dimensions)


TORCH_GLOBALS = {
    **PLAIN_GLOBALS,
    **{f"torch._utils.{f.__name__}": f for f in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3,
                                                 _rebuild_parameter)},
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Size": _size, "torch.device": _device,
    "torch.Tensor": "torch.Tensor", "torch.nn.parameter.Parameter": "torch.nn.parameter.Parameter",
    **{f"torch.{name}": name for name in BYTES_DTYPES},
    **{f"torch.{alias}": name for alias, name in _DTYPE_ALIASES.items()},
    **{f"{module}.{storage}": name for storage, name in _STORAGE_DTYPES.items()
       for module in ("torch", "torch.cuda", "torch.storage")},
}
REBUILD_FUNCTIONS = {name for name in TORCH_GLOBALS if name.startswith(("torch._utils.", "torch._tensor."))}
