"""hvd.Compression: how a tensor travels in hvd.allreduce and DistributedOptimizer.

`Compression.none` sends the values as they are; `Compression.fp16` sends floating-point
tensors as float16 (half the bytes of float32) and gives the result back in the
tensor's own dtype. In DistributedOptimizer, fp16 is the reducer's float16 buckets
(comm_hooks.BucketReduction, the same mechanism as DDP's gradient_compression="fp16");
in hvd.allreduce, the compressor's compress/decompress run around the allreduce, so a
compressor of your own (a Compressor subclass) works there too.
"""
from __future__ import annotations

import numpy

from ..engine.tensor import Tensor, _make


class Compressor:
    """compress(tensor) -> (tensor to send, context); decompress(tensor, context) -> tensor."""

    reducer_compression = None  # what GradientReducer calls it, for DistributedOptimizer

    @staticmethod
    def compress(tensor):
        raise NotImplementedError

    @staticmethod
    def decompress(tensor, ctx):
        raise NotImplementedError


class NoneCompressor(Compressor):
    """Send as is."""

    @staticmethod
    def compress(tensor):
        return tensor, None

    @staticmethod
    def decompress(tensor, ctx):
        return tensor


class FP16Compressor(Compressor):
    """Floating-point tensors travel as float16; others as they are."""

    reducer_compression = "fp16"

    @staticmethod
    def compress(tensor):
        data = tensor._data if isinstance(tensor, Tensor) else tensor
        if data.dtype.kind == "f" and data.dtype != numpy.float16:
            return _make(data.astype(numpy.float16)), data.dtype
        return tensor, None

    @staticmethod
    def decompress(tensor, ctx):
        if ctx is None:
            return tensor
        return _make(tensor._data.astype(ctx))


class Compression:
    """Horovod's names: Compression.none, Compression.fp16."""

    none = NoneCompressor
    fp16 = FP16Compressor


__all__ = ["Compression", "Compressor", "FP16Compressor", "NoneCompressor"]
