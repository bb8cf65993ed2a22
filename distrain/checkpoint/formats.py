"""Which format a file is in, and so which reader or writer serves `distrain.load` and `distrain.save`.

==========================  ==========================  =============================================
format                      load (by the first bytes)   save
==========================  ==========================  =============================================
distrain checkpoint         reader.py                   writer.py: the default, any tree of values
PyTorch .pt/.pth (zip and   torch_format.py             not written: save state_dicts in one of the
legacy layouts)                                         other two formats
safetensors                 safetensors_format.py       a path ending in ".safetensors": a flat dict
                                                        name -> tensor, readable by other frameworks
==========================  ==========================  =============================================

`load` looks at what a file holds, never at its name. None of the three runs code while loading.
"""
from __future__ import annotations

import os

from . import reader, writer
from .placement import Placement
from .reader import _remaining_size
from .safetensors_format import _read as _read_safetensors
from .safetensors_format import looks_like_safetensors, save_safetensors
from .torch_format import LEGACY_MAGIC, is_torch_file, load_torch


def load(f, map_location=None, weights_only=True):
    """Read what `distrain.save` or `torch.save` wrote, or a safetensors file, from `f`
    (a path or a binary file object). A `state_dict` saved by PyTorch loads into the distrain
    model of the same architecture::

        model.load_state_dict(distrain.load("resnet18.pth"))

    Args:
        f: a path, or a binary file object (e.g. `open(path, "rb")`, `io.BytesIO`) read from its
            current position. PyTorch and safetensors files need a seekable one.
        map_location: where tensors and arrays go. None puts each back on the device it was
            saved from; "cpu" or a `distrain.device` puts all of them there; a dict such as
            {"cuda:0": "cpu"} maps saved devices (others stay); a callable
            `fn(cpu_array, saved_device_name)` returns the array to use, a device, or None
            for the default.
        weights_only: accepted for PyTorch compatibility, True or False alike: distrain never
            runs code from a file. A PyTorch pickle is read by an unpickler that calls only
            distrain's own rebuilders of tensors, storages, dtypes and plain containers (the
            names PyTorch's `weights_only=True` allows) and refuses any other global, naming it,
            so even weights_only=False cannot make a file import or execute anything.

    From a PyTorch file, tensors share memory as they did when saved (tied weights, views);
    bfloat16 tensors load as float32 (exact: NumPy has no bfloat16); a dtype value loads as its
    name ("float16") and a torch.device as its name ("cuda:0").

    Raises:
        CheckpointError: the file is empty, truncated, damaged, of no format distrain reads, or
            a PyTorch pickle that names a global outside the allow-list (named in the message).
        DeviceError: a saved device does not exist here and map_location does not move it.
    """
    Placement(None, map_location)  # a bad map_location fails first, whatever the file
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as file:
            return _load_seekable(file, os.fspath(f), map_location)
    seekable = getattr(f, "seekable", None)
    if seekable is not None and seekable():
        return _load_seekable(f, str(getattr(f, "name", f"<{type(f).__name__}>")), map_location)
    return reader.load(f, map_location)  # a stream: only distrain's own format is read without seeking


def _load_seekable(file, name, map_location):
    start = file.tell()
    head = file.read(len(LEGACY_MAGIC))
    file.seek(start)
    if is_torch_file(head):
        return load_torch(file, name, Placement(name, map_location))
    if looks_like_safetensors(head, _remaining_size(file)):
        return _read_safetensors(file, name, Placement(name, map_location))
    return reader.load(file, map_location)


def save(obj, f) -> None:
    """`distrain.save`: the distrain checkpoint format, or safetensors for a path ending in ".safetensors".

    See `distrain.checkpoint.writer.save` (any tree of tensors, arrays and plain values, written
    atomically) and `distrain.checkpoint.save_safetensors` (a flat dict name -> tensor). A whole
    Module is refused: save its `state_dict()`.

    Example::

        >>> import distrain
        >>> model = distrain.nn.Linear(3, 2)
        >>> distrain.save(model.state_dict(), "linear.safetensors")
        >>> sorted(distrain.load("linear.safetensors"))
        ['bias', 'weight']
    """
    if isinstance(f, (str, os.PathLike)) and os.fspath(f).endswith(".safetensors"):
        return save_safetensors(obj, f)
    return writer.save(obj, f)
