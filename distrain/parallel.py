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

With gradient_compression="fp16" each bucket travels as float16 (half the bytes): the
bucket is scaled by 1/world_size and rounded into a float16 buffer of its own (the one
copy compression needs), summed across ranks, and written back into the flat gradient
when it arrives. Scaling before the sum, as PyTorch's fp16_compress_hook does, keeps a
sum of large gradients from overflowing float16's 65504.

`no_sync()` skips the reduction (gradient accumulation over several backwards). For a
custom loop the same reducer comes Horovod-style: `DistributedOptimizer(optimizer,
named_parameters)` plus `broadcast_parameters(state_dict)`.

NOTE [ MPI progress ]
MPICH (the mpi extra's) does not advance a non-blocking collective by itself: measured on a
2-core VM with 2 ranks, a 25 MiB Iallreduce overlapped with 5 ms of compute that never
calls into MPI hid 6% of the allreduce; testing the request between compute chunks hid 50%.
MPICH's own progress thread (MPIR_CVAR_ASYNC_PROGRESS=1) hid all of it but made the
allreduce itself 4.7x slower on 2 cores. So the MPI communicator runs its own progress
thread (comm/mpi.py, ProgressThread): it tests the oldest request in flight every 50 us,
sleeping in between, and only while requests are in flight. With 100 MB of buckets in
flight and the CPU otherwise idle for one backward's time (the GPU case), 84% of the
allreduce finished behind it, against 16% when requests are only tested from the
reducer's hooks (benchmarks/bench_overlap.py). When backward itself fills every core, as
with 2 CPU ranks on 2 cores, little can hide either way: the copies and sums of the
allreduce need a core too. The reducer still calls is_completed() on the requests in
flight as each gradient lands; with the progress thread that is a flag check, and with
progress="test" ($DISTRAIN_MPI_PROGRESS=test) it is what drives MPI.
"""
from __future__ import annotations

import contextlib
import time

import numpy

from .engine.autograd.engine import queue_callback
from .engine.backend import Device, array_module
from .engine.autograd.grad_mode import is_grad_enabled
from .engine.flat import FlatParameters, pack_parameters
from .engine.nn.module import Module
from .errors import DistrainError
from .timeline import current as current_timeline


def check_same_parameters_everywhere(comm, named, who):
    """Every rank raises, naming the first differing parameter, unless all ranks hold the same list."""
    signature = [(name, tuple(p.shape), str(p.dtype)) for name, p in named]
    for rank, theirs in enumerate(comm.allgather_object(signature)):
        if theirs == signature:
            continue
        for index in range(max(len(theirs), len(signature))):
            mine = signature[index] if index < len(signature) else None
            other = theirs[index] if index < len(theirs) else None
            if mine != other:
                raise DistrainError(
                    f"{who}: rank {comm.rank} and rank {rank} hold different models: parameter {index} is {mine} "
                    f"here and {other} on rank {rank} (name, shape, dtype). Every rank must build the same model")


class GradientReducer:
    """Averages the gradients of `parameters` over `comm`'s ranks while backward runs.

    The mechanism of DistributedDataParallel and DistributedOptimizer alike: `arm()` before
    a backward, and `finish()` after it (DDP: at the end of backward; DistributedOptimizer:
    in step()). See the module docstring.
    """

    COMPRESSIONS = (None, "fp16")

    def __init__(self, comm, parameters, bucket_cap_bytes, compression=None, owner="GradientReducer",
                 count_backwards=False):
        if compression not in self.COMPRESSIONS:
            raise ValueError(f"gradient_compression must be one of {self.COMPRESSIONS}, got {compression!r}")
        self.comm = comm
        flats = pack_parameters(parameters)
        self.flats = flats
        self.buckets = self._make_buckets(flats, bucket_cap_bytes)
        self.compression = compression
        # what the timeline calls a bucket's reduction (NOTE [ Timeline of the buckets ])
        self.operation = "push/pull" if getattr(comm, "name", None) == "ps" else "allreduce"
        for index, bucket in enumerate(self.buckets):
            wire = None
            if compression == "fp16" and bucket["flat"].grad.dtype.itemsize > 2:
                wire = bucket["flat"].array_module.empty(bucket["end"] - bucket["start"], dtype="float16")
            bucket["wire"] = wire
            travels = bucket["flat"].grad[bucket["start"]:bucket["end"]] if wire is None else wire
            bucket["timeline_args"] = {"bucket": index, "bytes": int(travels.nbytes), "dtype": str(travels.dtype),
                                       "parameters": len(bucket["params"]), "backend": getattr(comm, "name", "?")}
        self._bucket_of = {}
        for bucket in self.buckets:
            for parameter in bucket["params"]:
                self._bucket_of[id(parameter)] = bucket
                parameter.register_post_accumulate_grad_hook(self._gradient_ready)
        self._handles = []
        self._bucket_events = {}  # index in _handles -> (timeline, start ns, bucket), only while a timeline is on
        self.wait_seconds = 0.0  # how long finish() has waited for reductions in all: the exposed communication
        self.armed = False
        self.position = 0  # where this rank is in training; compared across ranks at each reduction
        self.count_backwards = count_backwards  # DDP: each backward that reaches the parameters moves it on
        self.backward_counted = False  # this backward (or, unarmed, this forward's backwards) is counted already
        self.owner = owner  # for the errors
        self.position_name = "backwards (and forwards that broadcast buffers)" if count_backwards else "steps"

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

    def broadcast_from(self, root=0):
        for flat in self.flats:
            self.comm.broadcast(flat.data, root=root)

    def arm(self):
        """The next backward's gradients are to be reduced."""
        for bucket in self.buckets:
            bucket["waiting"] = len(bucket["params"])
        self._next_bucket = 0
        self._handles = []
        self._bucket_events = {}
        self.armed = True

    def _gradient_ready(self, parameter):
        if self.count_backwards and not self.backward_counted:  # NOTE [ sequence check ]
            self.position += 1
            self.backward_counted = True
        if not self.armed:
            return  # no_sync(), or a further backward of a forward already reduced: local, as in PyTorch
        for handle, _, _ in self._handles:  # NOTE [ MPI progress ]: let MPI move the allreduces in flight
            handle.is_completed()
        if self._bucket_events:
            self._record_finished_buckets(self._handles, self._bucket_events)
        bucket = self._bucket_of[id(parameter)]
        bucket["waiting"] -= 1
        if bucket["waiting"] < 0:
            raise DistrainError(
                f"{self.owner}: rank {self.comm.rank}: a parameter's gradient arrived twice before its average was "
                "taken (two backwards per step?): its bucket's allreduce is already under way. Call step() after "
                "each backward, or sum the losses and run one backward")
        self._launch_ready_buckets()

    def _launch_ready_buckets(self):
        """Start the allreduces of the ready buckets, always in bucket order.

        Every rank must issue its collectives in the same order (MPI matches them by order,
        and a mismatch mixes up buckets or hangs). Gradients may become ready in another
        order on some rank (a different branch finishing first), so a bucket waits for the
        ones before it; in the usual case, reverse parameter order, nothing waits.
        """
        while self._next_bucket < len(self.buckets) and self.buckets[self._next_bucket]["waiting"] == 0:
            self._launch(self.buckets[self._next_bucket])
            self._next_bucket += 1

    def _launch(self, bucket):
        timeline = current_timeline()
        if timeline is not None:  # NOTE [ Timeline of the buckets ]
            self._bucket_events[len(self._handles)] = (timeline, timeline.now_ns(), bucket)
        flat = bucket["flat"]
        for parameter in bucket["params"]:
            if not FlatParameters.grad_is_flat(parameter):
                self._adopt_gradient(parameter, flat)
        gradient = flat.grad[bucket["start"]:bucket["end"]]
        wire = bucket["wire"]
        if wire is None:
            self._handles.append((self.comm.allreduce_async(gradient, "mean"), None, None))
            return
        xp = flat.array_module
        xp.multiply(gradient, 1.0 / self.comm.size, out=wire, casting="same_kind")
        self._handles.append((self.comm.allreduce_async(wire, "sum"), wire, gradient))

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

    def shadow(self):
        """A joined rank's part of one reduction: zeros for every bucket, as the active ranks reduce theirs."""
        handles = []
        for bucket in self.buckets:
            wire = bucket["wire"]
            flat = bucket["flat"]
            zeros = flat.array_module.zeros(bucket["end"] - bucket["start"],
                                            dtype=flat.grad.dtype if wire is None else wire.dtype)
            handles.append(self.comm.allreduce_async(zeros, "mean" if wire is None else "sum"))
        sequence = self._start_sequence_check(None)
        for handle in handles:
            handle.wait()
        self._finish_sequence_check(sequence)

    def finish(self):
        """Reduce what has not been (unused parameters' zeros), then wait for every allreduce."""
        if not self.armed:
            return
        self.armed = False
        for bucket in self.buckets[self._next_bucket:]:
            self._launch(bucket)  # unused parameters' buckets (their zeros), in order
        self.backward_counted = False  # a further backward of this forward counts again
        sequence = self._start_sequence_check(self.position)
        handles, self._handles = self._handles, []
        events, self._bucket_events = self._bucket_events, {}
        timeline = current_timeline() if events else None
        waited_since = timeline.now_ns() if timeline is not None else None
        wait_started = time.perf_counter()
        for handle, wire, gradient in handles:
            handle.wait()
            if wire is not None:
                gradient[...] = wire  # back from float16 into the flat gradient
            if events:
                self._record_finished_buckets(handles, events)
        self._finish_sequence_check(sequence)
        self.wait_seconds += time.perf_counter() - wait_started  # communication that backward did not hide
        if timeline is not None:
            timeline.complete(f"wait for {self.operation}", "comm", waited_since)

    # NOTE [ Timeline of the buckets ]
    # With a timeline on (distrain.timeline.current()), each bucket's reduction is one event on
    # its "comm" rows, from launch to the first moment this rank sees it complete (a gradient
    # hook's is_completed() or finish()'s wait: at most one gradient after the communicator
    # finished it); finish() records its own wait too, the communication backward did not hide.
    # With none: one current() per bucket and one empty-dict test per gradient (~50 and ~20 ns).
    def _record_finished_buckets(self, handles, events):
        for index in [index for index in events if handles[index][0].is_completed()]:
            timeline, started, bucket = events.pop(index)
            timeline.complete(self.operation, "comm", started, bucket["timeline_args"], row="comm")

    # NOTE [ sequence check ]
    # Ranks that disagree on when to reduce (no_sync() on some ranks only, an extra backward
    # on one rank, a forward that broadcasts buffers on one rank only) still pair up their
    # bucket allreduces, which have the same sizes on every rank: MPI matches collectives by
    # order, so the gradients of different steps would be averaged together, silently, for
    # the rest of the run. So each reduction ends with one more tiny allreduce: the MAX of
    # (position, -position). DDP's position counts the backwards that reach the model's
    # parameters (reduced or not) and the forwards that broadcast buffers, the two things
    # every rank must do alike; a forward without backward and without buffers, or a second
    # backward run by every rank, is fine, as in PyTorch. DistributedOptimizer's counts
    # steps. All equal means max == -max(-position); otherwise every rank learns it in the
    # same collective, they gather the positions to name who is where, and all raise. A rank
    # inside join() sends the smallest int64s, which leave the others' max and min alone. The cost is one 16-byte
    # allreduce per step, started behind the buckets (benchmarks/bench_safety.py measures it).
    _NEUTRAL = numpy.iinfo(numpy.int64).min

    def _start_sequence_check(self, position):
        values = numpy.full(2, self._NEUTRAL, dtype=numpy.int64)
        if position is not None:
            values[:] = (position, -position)
        return values, position, self.comm.allreduce_async(values, "max")

    def _finish_sequence_check(self, sequence):
        values, position, handle = sequence
        handle.wait()
        if values[0] == self._NEUTRAL or values[0] == -values[1]:
            return
        here = numpy.array([self._NEUTRAL if position is None else position], dtype=numpy.int64)
        positions = numpy.asarray(self.comm.allgather(here))[:, 0]
        where = ", ".join(f"rank {rank} at {value}" for rank, value in enumerate(positions.tolist())
                          if value != self._NEUTRAL)
        raise DistrainError(
            f"{self.owner}: the ranks are out of step: {where} {self.position_name} when their gradients were to be "
            "averaged together (a forward or backward that only some ranks run, or no_sync() on some ranks only). "
            "Every rank must run the same forwards and backwards; use join() for uneven data")


def _check_device_ids(module, device_ids):
    """PyTorch's rule: device_ids names the single device a GPU module lives on; a CPU module takes None."""
    if device_ids is None:
        return
    devices = {str(parameter.device) for parameter in module.parameters()}
    named = [str(Device(f"cuda:{d}") if isinstance(d, int) else Device(d)) for d in device_ids]
    if devices == {"cpu"} or len(devices) != 1:
        raise ValueError(f"DistributedDataParallel: device_ids={list(device_ids)} is for a module on one GPU, but the "
                         f"module's parameters are on {sorted(devices)}; pass device_ids=None for a CPU module (or "
                         "move the module to its GPU first: model.to(f'cuda:{local_rank}'))")
    if named != list(devices):
        raise ValueError(f"DistributedDataParallel: device_ids={list(device_ids)} but the module is on "
                         f"{next(iter(devices))}; give that one device (or move the module there first)")


def _communicator(comm):
    if comm is not None:
        return comm
    from . import distributed

    return distributed.get_communicator()


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

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True, init_sync=True,
                 process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False, *, comm=None, gradient_compression=None):
        """PyTorch's arguments, in PyTorch's order (a script's `DDP(model, [local_rank])` means device_ids here too).

        Honoured: device_ids (checked: the module's own device, one of them, or None for a CPU
        module, as PyTorch requires), broadcast_buffers, init_sync (False: no broadcast of rank
        0's parameters at construction), process_group (a communicator; `comm=` is the same),
        bucket_cap_mb (default 25). Accepted because distrain always does what they ask for:
        gradient_as_bucket_view (gradients are views of the flat buffer whose slices are the
        buckets), find_unused_parameters and static_graph (parameters without a gradient are
        reduced as zeros every step, so neither is needed), output_device and dim (outputs stay
        on the module's one device), check_reduction (deprecated in PyTorch). distrain's own:
        gradient_compression="fp16".
        """
        super().__init__()
        if comm is not None and process_group is not None and comm is not process_group:
            raise ValueError("DistributedDataParallel: give the communicator as process_group or comm, not both")
        comm = _communicator(comm if comm is not None else process_group)
        _check_device_ids(module, device_ids)
        bucket_cap_mb = 25 if bucket_cap_mb is None else bucket_cap_mb
        self.module = module
        object.__setattr__(self, "comm", comm)
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters  # unused parameters are always handled (as zeros)
        self._sync = True
        self._joining = False
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        check_same_parameters_everywhere(comm, named, "DistributedDataParallel")
        object.__setattr__(self, "_reducer", GradientReducer(comm, [p for _, p in named], int(bucket_cap_mb * 2 ** 20),
                                                             gradient_compression, "DistributedDataParallel",
                                                             count_backwards=True))
        if init_sync:
            self._reducer.broadcast_from(0)
            self._broadcast_buffers()

    @property
    def _buckets(self):
        return self._reducer.buckets

    @property
    def communication_wait_seconds(self) -> float:
        """Seconds spent waiting for gradient reductions at the ends of backward, and broadcasting buffers at the
        starts of forward, in all: the communication not hidden behind computation."""
        return self._reducer.wait_seconds

    @property
    def _has_buffers(self):
        return any(True for _ in self.module.buffers())

    def _broadcast_buffers(self, root=0):
        """root's buffers to every rank: one broadcast per dtype, not one per buffer (as PyTorch's DDP coalesces).

        A ResNet-18 has 60 BatchNorm buffers; 60 small broadcasts per forward cost more than
        one of their concatenation. The time counts as communication (communication_wait_seconds).
        """
        started = time.perf_counter()
        groups = {}
        for buffer in self.module.buffers():
            groups.setdefault((type(buffer._data), buffer._data.dtype.str), []).append(buffer._data)
        for arrays in groups.values():
            if len(arrays) == 1 and arrays[0].flags.c_contiguous:
                self.comm.broadcast(arrays[0], root=root)
                continue
            xp = array_module(arrays[0])
            joined = xp.concatenate([array.reshape(-1) for array in arrays])
            self.comm.broadcast(joined, root=root)
            offset = 0
            for array in arrays:
                array[...] = joined[offset:offset + array.size].reshape(array.shape)
                offset += array.size
        self._reducer.wait_seconds += time.perf_counter() - started

    def forward(self, *args, **kwargs):
        will_sync = self._sync and is_grad_enabled()
        if is_grad_enabled():
            self._reducer.backward_counted = False  # NOTE [ sequence check ]: its first backward counts
            if not self._sync:  # a forward before, never backpropagated, armed the reducer: this backward is local
                self._reducer.armed = False
        if will_sync:
            root = self._announce_forward() if self._joining else 0
            if self.broadcast_buffers and self._has_buffers:
                self._reducer.position += 1  # a collective: every rank must run this forward too
                self._broadcast_buffers(root)
            if not self._reducer.armed:
                self._reducer.arm()
                queue_callback(self._reducer.finish)
        return self.module(*args, **kwargs)

    def _announce_forward(self):
        """Inside join(): tell the ranks that ran out of data that a reducing forward runs.

        The flags hold one slot per rank; the sum says which ranks still train. Buffers
        come from the lowest of those (rank 0 may have stopped, its BatchNorm statistics
        gone stale). Returns that rank.
        """
        flags = numpy.zeros(self.comm.size, dtype=numpy.int64)
        flags[self.comm.rank] = 1
        self.comm.allreduce(flags, "sum")
        self._forwards_in_join += 1
        return int(numpy.flatnonzero(flags)[0])

    @contextlib.contextmanager
    def join(self, enable=True):
        """Train on uneven inputs: a rank that runs out of batches waits here for the others without hanging them.

        Every rank wraps its loop::

            with model.join():
                for x, y in loader:             # some ranks have fewer batches than others
                    ...forward, backward, step...

        Inside, each forward that will reduce (not under no_grad or no_sync) first tells
        the other ranks it is still running (one small allreduce). A rank whose loop has
        ended stays in join() and takes part in the others' reductions with zero
        gradients, until every rank has ended; the BatchNorm buffers come from the lowest
        rank still training. As in
        PyTorch, the sum is still divided by the whole world size, so an iteration that
        only some ranks join is weighted by the share of ranks that had data.

        The simpler alternative is to give every rank the same number of batches:
        DistributedSampler does so by default (it pads with repeated samples).
        When every rank has ended, the parameters and buffers of the rank that ran the
        most iterations (the lowest such rank) are broadcast to all, since the ranks that
        stopped early skipped the later optimizer steps. Optimizer state (momentum) is not
        synchronised, as in PyTorch. One forward per backward inside join().
        """
        if not enable:
            yield self
            return
        self._joining = True
        self._forwards_in_join = 0
        try:
            yield self
        except BaseException:
            self._joining = False
            raise
        try:
            while True:  # this rank is out of data: shadow the others' reductions until everyone is
                flags = numpy.zeros(self.comm.size, dtype=numpy.int64)
                self.comm.allreduce(flags, "sum")
                running = numpy.flatnonzero(flags)
                if running.size == 0:
                    break
                if self.broadcast_buffers:
                    self._broadcast_buffers(int(running[0]))
                self._reducer.shadow()
        finally:
            self._joining = False
        counts = self.comm.allgather(numpy.array([self._forwards_in_join], dtype=numpy.int64))[:, 0]
        # NOTE [ sequence check ]: ranks that ran out of data ran fewer backwards; from here on they are in step
        position = numpy.array([self._reducer.position], dtype=numpy.int64)
        self._reducer.position = int(self.comm.allreduce(position, "max")[0])
        self._reducer.broadcast_from(int(numpy.argmax(counts)))  # the rank that took every step
        self._broadcast_buffers(root=int(numpy.argmax(counts)))

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


class DistributedOptimizer:
    """Horovod-style data parallelism for a custom loop: wrap the optimizer, keep the model as it is.

    Gradients are averaged over ranks as backward produces them (the same reducer as
    DistributedDataParallel); `step()` waits for the last allreduces, then runs the wrapped
    optimizer. Everything else is delegated to it. Call `broadcast_parameters` first so
    that every rank starts from rank 0's weights.

    Example::

        broadcast_parameters(model.state_dict(), root_rank=0)
        optimizer = DistributedOptimizer(distrain.optim.SGD(model.parameters(), lr=0.1), model.named_parameters())
    """

    def __init__(self, optimizer, named_parameters, comm=None, bucket_cap_mb=25, gradient_compression=None):
        comm = _communicator(comm)
        named = [(name, p) for name, p in named_parameters if p.requires_grad]
        check_same_parameters_everywhere(comm, named, "DistributedOptimizer")
        self.optimizer = optimizer
        self.comm = comm
        self._reducer = GradientReducer(comm, [p for _, p in named], int(bucket_cap_mb * 2 ** 20),
                                        gradient_compression, "DistributedOptimizer")
        self._reducer.arm()

    def synchronize(self):
        """Wait until every gradient is averaged (step() does this itself)."""
        self._reducer.finish()

    def step(self, closure=None):
        self._reducer.position += 1  # NOTE [ sequence check ]
        self.synchronize()
        result = self.optimizer.step(closure)
        self._reducer.arm()  # the next backward's gradients
        return result

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none)

    def __getattr__(self, name):
        return getattr(self.__dict__["optimizer"], name)


def broadcast_parameters(params, root_rank=0, comm=None):
    """Overwrite every rank's values with root_rank's: a state_dict, named parameters, or tensors."""
    comm = _communicator(comm)
    items = params.items() if hasattr(params, "items") else params
    for item in items:
        tensor = item[1] if isinstance(item, tuple) else item
        data = tensor._data
        if data.flags.c_contiguous:
            comm.broadcast(data, root=root_rank)
        else:
            staged = data.copy()
            comm.broadcast(staged, root=root_rank)
            data[...] = staged
        tensor._version_counter[0] += 1


__all__ = ["DistributedDataParallel", "DistributedOptimizer", "GradientReducer", "broadcast_parameters"]
