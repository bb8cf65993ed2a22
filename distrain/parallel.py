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

`no_sync()` skips the reduction (gradient accumulation over several backwards);
`register_comm_hook` changes how buckets travel (comm_hooks.py). For a custom loop the same
reducer (gradient_reducer.py) comes Horovod-style: `distrain.horovod.DistributedOptimizer(
optimizer, named_parameters)` plus `broadcast_parameters(state_dict)`.

NOTE [ MPI progress ]
MPICH (the mpi extra's) does not advance a non-blocking collective by itself: measured on a
2-core VM with 2 ranks, a 25 MiB Iallreduce overlapped with 5 ms of compute that never
calls into MPI hid 6% of the allreduce; testing the request between compute chunks hid 50%.
MPICH's own progress thread (MPIR_CVAR_ASYNC_PROGRESS=1) hid all of it but made the
allreduce itself 4.7x slower on 2 cores. So the MPI communicator runs its own progress
thread (comm/mpi.py, ProgressThread): it tests every request in flight every 50 us,
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

from .comm_hooks import UserHookReduction
from .engine.autograd.engine import queue_callback
from .engine.backend import Device, array_module
from .engine.autograd.grad_mode import is_grad_enabled
from .engine.nn.module import Module
from .errors import DistrainError
from .gradient_reducer import GradientReducer, shadow_until_everyone_joined


def check_same_parameters_everywhere(comm, named, who):
    """Every rank raises, naming the first differing parameter, unless all ranks hold the same list."""
    signature = [(name, tuple(p.shape), p.dtype.name) for name, p in named]
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
    """The communicator to reduce over: the one given, a process group's (new_group, group.WORLD), else the job's."""
    from . import distributed

    if comm is None:
        return distributed.get_communicator()
    if isinstance(comm, distributed.ProcessGroup):
        return comm.communicator
    if comm == distributed.GroupMember.NON_GROUP_MEMBER:
        raise ValueError(f"DistributedDataParallel: rank {distributed.get_rank()} is not a member of this "
                         "process_group (new_group returned GroupMember.NON_GROUP_MEMBER to it); wrap the model "
                         "only on the group's ranks")
    return comm


def _served_model(comm, named, ps_mode, staleness, damping, compression):
    """A ServedModel when this DDP trains asynchronously on the parameter server (comm/ps/served_model.py), else None."""
    from .comm.ps import modes

    default_mode = getattr(comm, "ps_mode", "sync")
    mode = default_mode if ps_mode is None else modes.ps_mode(ps_mode, where="DistributedDataParallel(ps_mode=...)")
    if mode == "sync":
        if staleness is not None or damping is not None:
            raise ValueError("DistributedDataParallel: staleness= and staleness_damping= are for ps_mode=\"async\" "
                             "(on the parameter-server backend); this model trains synchronously, which has no "
                             "staleness")
        return None
    if getattr(comm, "name", None) != "ps" or getattr(comm, "global_ranks", None) is not None:
        raise ValueError(f"DistributedDataParallel(ps_mode=\"async\") needs the whole job's parameter-server "
                         f"communicator (backend \"ps\"), but this one is {getattr(comm, 'name', comm)!r}"
                         + (" of a subgroup" if getattr(comm, "global_ranks", None) is not None else "") +
                         ": start the job with python -m distrain.launch --backend ps")
    if compression is not None:
        raise ValueError("DistributedDataParallel: gradient_compression is for synchronous training; asynchronous "
                         "pushes travel in the parameters' dtype")
    from .comm.ps.served_model import ServedModel

    bound = comm.staleness if staleness is None else modes.staleness(staleness,
                                                                     where="DistributedDataParallel(staleness=...)")
    return ServedModel(comm, [p for _, p in named], bound, comm.staleness_damping if damping is None else damping,
                       names=[name for name, _ in named])


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
                 gradient_as_bucket_view=False, static_graph=False, *, comm=None, gradient_compression=None,
                 ps_mode=None, staleness=None, staleness_damping=None):
        """PyTorch's arguments, in PyTorch's order (a script's `DDP(model, [local_rank])` means device_ids here too).

        Honoured: device_ids (checked: the module's own device, one of them, or None for a CPU
        module, as PyTorch requires), broadcast_buffers, init_sync (False: no broadcast of rank
        0's parameters at construction), process_group (a communicator; `comm=` is the same),
        bucket_cap_mb (default 25). Accepted because distrain always does what they ask for:
        gradient_as_bucket_view (gradients are views of the flat buffer whose slices are the
        buckets), find_unused_parameters and static_graph (parameters without a gradient are
        reduced as zeros every step, so neither is needed), output_device and dim (outputs stay
        on the module's one device), check_reduction (deprecated in PyTorch). distrain's own:
        gradient_compression="fp16"; on the parameter-server backend, ps_mode="async" with
        staleness=K and staleness_damping (defaults: the communicator's, from
        distrain.distributed.init or the launcher's --ps-mode/--staleness): backward stays
        local and optimizer.step() pushes the gradients to the servers, which run the
        optimizer (comm/ps/served_model.py).
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
        self._served = _served_model(comm, named, ps_mode, staleness, staleness_damping, gradient_compression)
        if self._served is not None:  # asynchronous: nothing to reduce, and no collective (a restarted rank joins
            object.__setattr__(self, "_reducer", None)  # alone): the servers compare the models and hand out
            self._comm_hook = None  # rank 0's parameters at the first step (served_model.py)
            return
        check_same_parameters_everywhere(comm, named, "DistributedDataParallel")
        object.__setattr__(self, "_reducer", GradientReducer(comm, [p for _, p in named], int(bucket_cap_mb * 2 ** 20),
                                                             gradient_compression, "DistributedDataParallel",
                                                             count_backwards=True))
        self._comm_hook = None
        if init_sync:
            self._reducer.broadcast_from(0)
            self._broadcast_buffers()

    @property
    def _buckets(self):
        return self._reducer.buckets

    @property
    def communication_wait_seconds(self) -> float:
        """Seconds spent waiting for gradient reductions at the ends of backward, and broadcasting buffers at the
        starts of forward, in all: the communication not hidden behind computation (asynchronous mode: waiting
        in optimizer.step() and pull_parameters() for the servers' answers)."""
        return self._served.wait_seconds if self._served is not None else self._reducer.wait_seconds

    @property
    def staleness_histogram(self):
        """Asynchronous mode: {staleness: steps} of this rank's gradients (ServedModel); None in synchronous mode."""
        return None if self._served is None else dict(self._served.staleness_histogram)

    def pull_parameters(self):
        """Give every rank the servers' current parameters (asynchronous mode); synchronous mode: nothing to do.

        Asynchronous ranks end their steps holding parameters of different versions: each has
        the ones the servers answered its own last push with, which lack the updates of the
        gradients pushed after it. Before evaluating or saving, every rank calls this: it waits
        until every rank has got here (so that every gradient pushed before is applied), takes
        the servers' parameters, and broadcasts rank 0's buffers (BatchNorm's running
        statistics, which the servers do not hold), so that every rank then holds the same
        model. It is a collective, like a barrier: call it on every rank at the same point.

        In synchronous mode every rank holds the same parameters after each step already (and
        rank 0's buffers arrive at each forward), so it returns at once, without communicating.

        Example (the end of an asynchronous run)::

            model.pull_parameters()
            if dist.get_rank() == 0:
                distrain.save(model.module.state_dict(), "model.dt")
        """
        if self._served is None:
            return
        started = time.perf_counter()
        self.comm.barrier()
        self._served.pull()
        self._served.wait_seconds += time.perf_counter() - started
        if self.broadcast_buffers and self._has_buffers:
            self._broadcast_buffers()  # a collective too: no rank pushes again before every rank has pulled
        else:
            self.comm.barrier()  # no rank pushes again (its next step) before every rank has pulled

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
        (self._served if self._served is not None else self._reducer).wait_seconds += time.perf_counter() - started

    def forward(self, *args, **kwargs):
        if self._served is not None:  # asynchronous: backward is local, optimizer.step() talks to the servers
            return self.module(*args, **kwargs)
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
        """Inside join(): tell the ranks that ran out of data that a reducing forward runs (NOTE [ join ]).

        Buffers come from the lowest rank still training (rank 0 may have stopped, its
        BatchNorm statistics gone stale). Returns that rank.
        """
        flags, handle = self._reducer.announce()
        handle.wait()
        self._forwards_in_join += 1
        return int(numpy.flatnonzero(flags[:self.comm.size])[0])

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
        if not enable or self._served is not None:  # asynchronous: no rank waits for another's batches
            yield self
            return
        self._joining = True
        self._forwards_in_join = 0
        try:
            yield self
        except BaseException:
            self._joining = False
            raise
        def broadcast_buffers(running):
            if self.broadcast_buffers:
                self._broadcast_buffers(int(running[0]))

        try:  # this rank is out of data: shadow the others' reductions until everyone is (NOTE [ join ])
            shadow_until_everyone_joined(self.comm, {self._reducer.identity: self._reducer}, broadcast_buffers,
                                         "DistributedDataParallel.join()")
        finally:
            self._joining = False
        counts = self.comm.allgather(numpy.array([self._forwards_in_join], dtype=numpy.int64))[:, 0]
        # NOTE [ sequence check ]: ranks that ran out of data ran fewer backwards; from here on they are in step
        self._reducer.catch_up()
        self._reducer.broadcast_from(int(numpy.argmax(counts)))  # the rank that took every step
        self._broadcast_buffers(root=int(numpy.argmax(counts)))

    def register_comm_hook(self, state, hook):
        """Change how each gradient bucket is reduced: PyTorch's DDP communication hooks (comm_hooks.py).

        The default hooks of distrain.distributed.algorithms.ddp_comm_hooks.default_hooks
        (allreduce_hook, fp16_compress_hook, bf16_compress_hook) run the reducer's own
        reductions: fp16_compress_hook is gradient_compression="fp16". Any other
        `hook(state, bucket)` gets a comm_hooks.GradBucket when the bucket is ready and
        returns a distrain.futures.Future whose value is the reduced bucket; the reducer
        waits for it at the end of backward. As in PyTorch: once, before the first backward.

        Example::

            from distrain.distributed.algorithms.ddp_comm_hooks import default_hooks
            model.register_comm_hook(None, default_hooks.fp16_compress_hook)
        """
        if self._served is not None:
            raise DistrainError("DistributedDataParallel.register_comm_hook: in asynchronous parameter-server mode no "
                                "bucket is reduced (the servers take each rank's gradients); use ps_mode=\"sync\" "
                                "for a communication hook")
        if self._comm_hook is not None:
            raise DistrainError(f"DistributedDataParallel.register_comm_hook: a hook ({self._comm_hook!r}) is "
                                "registered already; it can be called only once, as in PyTorch")
        if self._reducer.reductions or self._reducer.gradients_pending:
            raise DistrainError("DistributedDataParallel.register_comm_hook: call it before the first backward "
                                "(gradients have been reduced already)")
        if not callable(hook):
            raise DistrainError(f"DistributedDataParallel.register_comm_hook: hook must be a function "
                                f"hook(state, bucket) -> Future, got {type(hook).__name__}")
        builtin = getattr(hook, "reduction", None)
        if builtin is not None:
            if state is not None and _communicator(state) is not self.comm:
                raise DistrainError(f"DistributedDataParallel.register_comm_hook({hook.__name__}): state must be None "
                                    "or the model's own process group (the one given to DistributedDataParallel)")
            self._reducer.set_reduction(builtin)
        else:
            self._reducer.set_reduction(UserHookReduction(state, hook))
        self._comm_hook = getattr(hook, "__name__", hook)

    def _run_captured_step(self, forward_backward):
        """One synchronised step whose forward and backward on `self.module` run as a static graph (distrain.jit).

        `forward_backward()` runs the wrapped module's forward and backward without this
        wrapper (a capture, or a replay in which no gradient hook fires), so this does what
        forward() and the gradient hooks would: broadcast buffers first, count the backward
        (NOTE [ sequence check ]), then reduce every bucket once the whole backward is done.
        """
        if self._served is not None:
            return forward_backward()  # asynchronous: backward is local, the optimizer's step talks to the servers
        if self._joining:
            raise DistrainError("DistributedDataParallel: a compiled step (distrain.jit.compile_step) cannot run "
                                "inside join(); run the uneven tail of the data eagerly")
        will_sync = self._sync and is_grad_enabled()
        reducer = self._reducer
        reducer.backward_counted = False
        reducer.armed = False  # gradient hooks inside a capture only count, as under no_sync()
        if will_sync and self.broadcast_buffers and self._has_buffers:
            reducer.position += 1
            self._broadcast_buffers(0)
        result = forward_backward()
        if not reducer.backward_counted:  # a replay fires no hooks
            reducer.position += 1
            reducer.backward_counted = True
        if will_sync:
            reducer.arm()
            reducer.finish()
        return result

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


def __getattr__(name):
    """Horovod's DistributedOptimizer and broadcast_parameters, here too: the objects of distrain.horovod.

    Resolved on first use (PEP 562): distrain.horovod builds on this module's reducer.
    """
    if name in ("DistributedOptimizer", "broadcast_parameters"):
        from . import horovod

        return getattr(horovod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DistributedDataParallel", "DistributedOptimizer", "GradientReducer", "broadcast_parameters"]
