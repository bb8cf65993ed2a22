"""How one bucket of gradients travels and is combined: the reducer's reductions and DDP's communication hooks.

GradientReducer (gradient_reducer.py) hands each ready bucket, a slice of the flat
gradient buffer, to one `BucketReduction`, which says:

- combine: "average" (the default), "sum", or a function of every rank's bucket
  (Horovod's Adasum, horovod/adasum.py), which makes the bucket travel by allgather;
- compression: None, "fp16" (the bucket travels as float16: half the bytes, summed by
  the communicator) or "bf16" (bfloat16, which neither MPI nor the parameter server can
  sum: the 16-bit words are allgathered and summed on each rank in float32, in rank
  order, then rounded to bfloat16 once);
- predivide (averages only): Horovod's gradient_predivide_factor f: the bucket is
  scaled by 1/f before the sum and f/size after it. None means the world size: all of
  the division happens before the sum, which keeps a float16 sum of large gradients from
  overflowing (what DDP's gradient_compression="fp16" and PyTorch's fp16_compress_hook do).

The reductions through the communicator's allreduce_async are in flight while backward
goes on; the ones through allgather (bf16, Adasum) run when the reducer waits for them at
the end of backward (the communicators have no non-blocking allgather), synchronously.

DDP's `register_comm_hook(state, hook)` (parallel.py) takes PyTorch's hook functions:
the three below (also importable from distrain.distributed.algorithms.ddp_comm_hooks.
default_hooks, PyTorch's path) carry the BucketReduction that does what they do, and the
reducer uses it directly: `fp16_compress_hook` is gradient_compression="fp16". Any other
function is a user's hook, called as `hook(state, bucket)` with a `GradBucket` when the
bucket is ready, returning a Future (distrain.futures) whose value is the reduced bucket
(a Tensor, or a list holding one); the reducer waits for it at the end of backward. The
hook runs in the thread running backward; what it starts is as asynchronous as the
collectives it calls.
"""
from __future__ import annotations

import numpy

from .comm.base import Handle
from .engine.backend import array_module
from .engine.tensor import _make
from .errors import DistrainError
from .futures import Future, completed_when

COMBINES = ("average", "sum")
COMPRESSIONS = (None, "fp16", "bf16")


class BucketReduction:
    """One way of reducing a bucket (module docstring); immutable, shared by every bucket of a reducer."""

    def __init__(self, combine="average", compression=None, predivide=1.0):
        if not callable(combine) and combine not in COMBINES:
            raise DistrainError(f"BucketReduction: combine must be one of {COMBINES} or a function, got {combine!r}")
        if compression not in COMPRESSIONS:
            raise DistrainError(f"BucketReduction: compression must be one of {COMPRESSIONS}, got {compression!r}")
        if predivide is not None and not predivide > 0:
            raise DistrainError(f"gradient_predivide_factor must be > 0, got {predivide!r}")
        self.combine = combine
        self.compression = compression
        self.predivide = predivide
        self.gathers = compression == "bf16" or callable(combine)

    def scales(self, size):
        """(factor before the sum, factor after it)."""
        if self.combine != "average":
            return 1.0, 1.0
        predivide = size if self.predivide is None else self.predivide
        return 1.0 / predivide, predivide / size

    def wire_for(self, gradient):
        """A float16 buffer for a bucket of `gradient`'s size when it travels as float16 (else None)."""
        if self.compression == "fp16" and gradient.dtype.itemsize > 2:
            return array_module(gradient).empty(gradient.size, dtype="float16")
        return None

    def travelling(self, gradient, wire):
        """What goes on the wire for this bucket (for the timeline's byte counts)."""
        if self.compression == "bf16":
            return numpy.empty(gradient.size, dtype=numpy.uint16)
        return gradient if wire is None else wire

    def start(self, comm, gradient, wire=None, segments=None):
        """Start reducing `gradient` (1-D) in place: (Handle, function to run once it completed, or None)."""
        before, after = self.scales(comm.size)
        if self.gathers:
            return _GatheredHandle(lambda: self._gather(comm, gradient, before, after, segments)), None
        if wire is not None:
            xp = array_module(gradient)
            xp.multiply(gradient, before, out=wire, casting="same_kind")

            def back_from_float16():
                gradient[...] = wire
                if after != 1.0:
                    xp.multiply(gradient, after, out=gradient)

            return comm.allreduce_async(wire, "sum"), back_from_float16
        if self.combine == "average" and before == 1.0:
            return comm.allreduce_async(gradient, "mean"), None
        xp = array_module(gradient)
        if before != 1.0:
            xp.multiply(gradient, before, out=gradient)
        handle = comm.allreduce_async(gradient, "sum")
        if after == 1.0:
            return handle, None

        def scale_after():
            xp.multiply(gradient, after, out=gradient)

        return handle, scale_after

    def _gather(self, comm, gradient, before, after, segments):
        xp = array_module(gradient)
        scaled = gradient * before if before != 1.0 else gradient
        if self.compression == "bf16":
            everyone = bfloat16_decode(comm.allgather(bfloat16_encode(scaled)))
        else:
            everyone = comm.allgather(scaled)
        if callable(self.combine):
            result = self.combine(everyone, segments if segments is not None else [(0, gradient.size)])
        else:
            result = everyone[0].astype(xp.float32 if self.compression == "bf16" else gradient.dtype, copy=True)
            for row in everyone[1:]:  # rank order: the same sum on every rank
                result += row
            if self.compression == "bf16":
                result = bfloat16_decode(bfloat16_encode(result))
        if after != 1.0:
            result = result * after
        gradient[...] = result


class _GatheredHandle(Handle):
    """A reduction through allgather, run when waited for (the communicators' allgather blocks)."""

    def __init__(self, run):
        self.run = run
        self.done = False

    def wait(self, timeout=None):
        if not self.done:
            self.done = True
            self.run()

    def is_completed(self):
        return self.done  # never starts a blocking collective from a gradient hook


def bfloat16_encode(array):
    """float32 (or wider) values as bfloat16 bit patterns (uint16), rounded to nearest even; NaN stays NaN."""
    xp = array_module(array)
    bits = xp.ascontiguousarray(array, dtype=xp.float32).view(xp.uint32)
    rounded = ((bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16).astype(xp.uint16)
    return xp.where(xp.isnan(array), xp.uint16(0x7FC0), rounded)


def bfloat16_decode(words):
    """bfloat16 bit patterns (uint16) as float32 values (exact)."""
    xp = array_module(words)
    return (words.astype(xp.uint32) << 16).view(xp.float32)


class GradBucket:
    """What a DDP communication hook gets: one bucket of the flat gradient buffer (torch.distributed.GradBucket).

    `buffer()` is a Tensor viewing the bucket's gradients (changing it changes them);
    `gradients()` and `parameters()` list its parameters' gradient views and the
    parameters themselves, in bucket order (last parameters first, the order backward
    produces them); `index()` numbers the bucket; `is_last()` is True for the last one.
    """

    def __init__(self, index, gradient, parameters, offsets, is_last):
        self._index = index
        self._gradient = gradient
        self._parameters = parameters
        self._offsets = offsets
        self._is_last = is_last

    def index(self) -> int:
        return self._index

    def buffer(self):
        return _make(self._gradient)

    def set_buffer(self, tensor):
        self._gradient[...] = tensor._data if hasattr(tensor, "_data") else tensor

    def gradients(self):
        return [_make(self._gradient[offset:offset + size].reshape(parameter.shape))
                for parameter, (offset, size) in zip(self._parameters, self._offsets)]

    def parameters(self):
        return list(self._parameters)

    def is_last(self) -> bool:
        return self._is_last


class UserHookReduction:
    """A user's hook(state, bucket) -> Future as a reduction: the Future's value becomes the bucket's gradient."""

    gathers = False
    compression = None

    def __init__(self, state, hook):
        self.state = state
        self.hook = hook

    def wire_for(self, gradient):
        return None

    def travelling(self, gradient, wire):
        return gradient

    def start_bucket(self, bucket):
        """Run the hook on a GradBucket; (Handle, function copying the Future's value into the bucket)."""
        future = self.hook(self.state, bucket)
        if not isinstance(future, Future):
            raise DistrainError(f"DDP communication hook {getattr(self.hook, '__name__', self.hook)!r} returned "
                                f"{type(future).__name__}; it must return a distrain.futures.Future whose value is "
                                "the reduced bucket (e.g. futures.completed(bucket.buffer()) after an all_reduce)")
        gradient = bucket._gradient

        def take_value():
            value = future.value()
            if isinstance(value, (list, tuple)):
                value = value[0]
            array = value._data if hasattr(value, "_data") else value
            if array is not gradient:
                gradient[...] = array.reshape(gradient.shape)

        return _FutureHandle(future), take_value


class _FutureHandle(Handle):
    def __init__(self, future):
        self.future = future

    def wait(self, timeout=None):
        self.future.wait()

    def is_completed(self):
        return self.future.done()


def _builtin(reduction, name, doc):
    """A PyTorch default hook: called by a user, it reduces the bucket now; registered, the reducer uses `reduction`."""

    def hook(process_group, bucket):
        from .parallel import _communicator

        comm = _communicator(process_group)  # None: the job's; a group of new_group or group.WORLD: its own
        gradient = bucket._gradient
        handle, complete = reduction.start(comm, gradient, reduction.wire_for(gradient))

        def reduced():
            if complete is not None:
                complete()
            return bucket.buffer()

        return completed_when(handle, reduced)

    hook.__name__ = hook.__qualname__ = name
    hook.__doc__ = doc
    hook.reduction = reduction
    return hook


allreduce_hook = _builtin(BucketReduction("average"), "allreduce_hook",
                          "Average the bucket over the ranks (what DDP does without a hook).")
fp16_compress_hook = _builtin(BucketReduction("average", "fp16", predivide=None), "fp16_compress_hook",
                              "The bucket travels as float16, divided by the world size before the sum (half the "
                              "bytes); DDP's gradient_compression='fp16'.")
bf16_compress_hook = _builtin(BucketReduction("average", "bf16", predivide=None), "bf16_compress_hook",
                              "The bucket travels as bfloat16, divided by the world size first; allgathered and "
                              "summed in float32 on each rank (no communicator sums bfloat16), synchronously at the "
                              "end of backward.")

__all__ = ["BucketReduction", "GradBucket", "UserHookReduction", "allreduce_hook", "bf16_compress_hook",
           "bfloat16_decode", "bfloat16_encode", "fp16_compress_hook"]
