"""DistributedDataParallel: the same model on every rank, gradients averaged during backward.

The reducer is the one place where the engine and the communicators meet (shared/DESIGN.md):

- On construction the model's parameters are packed into flat buffers (engine/flat.py),
  every rank checks that all ranks hold the same parameter names, shapes and dtypes
  (an allgather of a signature: a mismatch raises on every rank, naming the first
  differing parameter, instead of hanging in a mis-sized allreduce), and rank 0's values
  are broadcast.
- Buckets are contiguous slices of the flat gradient buffer, laid out in reverse
  parameter order (the order backward produces gradients), each up to bucket_cap_mb.
- A post-accumulate hook per parameter counts down its bucket; when a bucket's last
  gradient is in place its allreduce (mean, in place, non-blocking) starts at once,
  overlapping the rest of backward. No gradient is copied into a separate bucket buffer.
- At the end of backward (engine.queue_callback) buckets that never filled (parameters
  unused in this forward) get zeros for their unused parameters and are reduced too,
  then every allreduce is waited for: after `loss.backward()` every `.grad` holds the
  average over ranks, and `optimizer.step()` runs as in a single process.

`no_sync()` skips the reduction (gradient accumulation over several backwards).

NOTE [ MPI progress ]
MPICH (the mpi extra's) does not advance a non-blocking collective by itself: measured on a
2-core VM with 2 ranks, a 25 MiB Iallreduce overlapped with 5 ms of compute that never
calls into MPI hid 6% of the allreduce; testing the request between compute chunks hid 50%.
MPICH's own progress thread (MPIR_CVAR_ASYNC_PROGRESS=1) hid all of it but made the
allreduce itself 4.7x slower on 2 cores. So the reducer tests every request in flight
each time a gradient lands: each backward step gives MPI a turn, at the cost of one
MPI_Test per request.
"""
from __future__ import annotations

import contextlib

from .engine.autograd.engine import queue_callback
from .engine.autograd.grad_mode import is_grad_enabled
from .engine.flat import FlatParameters, pack_parameters
from .engine.nn.module import Module
from .errors import DistrainError


class DistributedDataParallel(Module):
    """Wrap `module` so that backward averages its gradients over all ranks of `comm`.

    Example (run under `mpirun -n 4 python train.py`)::

        distrain.distributed.init()
        model = DistributedDataParallel(Net())
        optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:                       # each rank its own share (DistributedSampler)
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()       # gradients averaged over ranks here
            optimizer.step()
    """

    def __init__(self, module, comm=None, bucket_cap_mb=25, broadcast_buffers=True, gradient_compression=None,
                 find_unused_parameters=False):
        super().__init__()
        if gradient_compression is not None:
            raise ValueError(f"gradient_compression={gradient_compression!r} is not supported yet; use None")
        if comm is None:
            from . import distributed

            comm = distributed.get_communicator()
        self.module = module
        object.__setattr__(self, "comm", comm)
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self._sync = True
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        self._check_same_parameters_everywhere(named)
        flats = pack_parameters(p for _, p in named)
        for flat in flats:
            comm.broadcast(flat.data, root=0)
        self._broadcast_buffers()
        self._buckets = self._make_buckets(flats, int(bucket_cap_mb * 2 ** 20))
        self._bucket_of = {}
        for bucket in self._buckets:
            for parameter in bucket["params"]:
                self._bucket_of[id(parameter)] = bucket
                parameter.register_post_accumulate_grad_hook(self._gradient_ready)
        self._handles = []
        self._armed = False

    # -- construction ------------------------------------------------------------------------
    def _check_same_parameters_everywhere(self, named):
        signature = [(name, tuple(p.shape), str(p.dtype)) for name, p in named]
        everyone = self.comm.allgather_object(signature)
        for rank, theirs in enumerate(everyone):
            if theirs == signature:
                continue
            for index in range(max(len(theirs), len(signature))):
                mine = signature[index] if index < len(signature) else None
                other = theirs[index] if index < len(theirs) else None
                if mine != other:
                    raise DistrainError(
                        f"DistributedDataParallel: rank {self.comm.rank} and rank {rank} hold different models: "
                        f"parameter {index} is {mine} here and {other} on rank {rank} (name, shape, dtype). Every "
                        "rank must build the same model before wrapping it")

    def _broadcast_buffers(self):
        for buffer in self.module.buffers():
            if buffer._data.flags.c_contiguous:
                self.comm.broadcast(buffer._data, root=0)

    @staticmethod
    def _make_buckets(flats, cap_bytes):
        """Contiguous slices of each flat gradient buffer, last parameters first, up to cap_bytes each."""
        buckets = []
        for flat in flats:
            segments = sorted(flat.segments(), key=lambda segment: segment[1], reverse=True)
            current = None
            for parameter, offset, size in segments:
                if current is None or (current["end"] - offset) * flat.grad.itemsize > cap_bytes:
                    current = {"flat": flat, "start": offset, "end": offset + size, "params": []}
                    buckets.append(current)
                current["start"] = offset
                current["params"].append(parameter)
        return buckets

    # -- a training step ---------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self._sync and is_grad_enabled():
            if self.broadcast_buffers:
                self._broadcast_buffers()
            for bucket in self._buckets:
                bucket["waiting"] = len(bucket["params"])
                bucket["launched"] = False
            self._handles = []
            if not self._armed:
                self._armed = True
                queue_callback(self._finish_backward)
        return self.module(*args, **kwargs)

    def _gradient_ready(self, parameter):
        if not self._armed:
            return
        for handle in self._handles:  # NOTE [ MPI progress ]: let MPI move the allreduces in flight
            handle.is_completed()
        bucket = self._bucket_of[id(parameter)]
        bucket["waiting"] -= 1
        if bucket["waiting"] == 0:
            self._launch(bucket)

    def _launch(self, bucket):
        flat = bucket["flat"]
        for parameter in bucket["params"]:
            if not FlatParameters.grad_is_flat(parameter):
                self._adopt_gradient(parameter, flat)
        bucket["launched"] = True
        self._handles.append(self.comm.allreduce_async(flat.grad[bucket["start"]:bucket["end"]], "mean"))

    @staticmethod
    def _adopt_gradient(parameter, flat):
        """Put an unused parameter's (zero) or a moved gradient into its flat slice before reducing."""
        offset, size = flat.segment(parameter)
        view = flat.grad[offset:offset + size]
        if parameter._grad is None:
            view[...] = 0
        else:
            view[...] = parameter._grad._data.reshape(-1)
        parameter._grad = parameter._flat_grad

    def _finish_backward(self):
        self._armed = False
        for bucket in self._buckets:
            if not bucket["launched"]:
                self._launch(bucket)
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.wait()

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward only accumulates gradients locally; the next synced backward reduces the sum."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_modules"]["module"], name)


__all__ = ["DistributedDataParallel"]
