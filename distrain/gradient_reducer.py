"""GradientReducer: the one mechanism that reduces gradients over ranks while backward runs.

DistributedDataParallel (parallel.py) and Horovod's DistributedOptimizer (horovod/optimizer.py)
are two faces of it; parallel.py's module docstring tells the path of a bucket. What can
differ between uses is a parameter here:

- `reduction`: how a bucket travels and is combined (comm_hooks.BucketReduction: average,
  sum or Adasum; float32, float16 or bfloat16; Horovod's predivide factor), or a user's
  DDP communication hook (comm_hooks.UserHookReduction);
- `passes_per_reduction`: Horovod's backward_passes_per_step: a parameter's gradient is
  reduced once it has accumulated that many backward passes (no division by the count);
- `announces`: each reduction starts with a small non-blocking allreduce telling ranks
  inside Horovod's join() that a reduction is coming (NOTE [ join ]);
- `count_backwards`: what the sequence check counts (NOTE [ sequence check ]).
"""
from __future__ import annotations

import itertools
import time

import numpy

from .comm_hooks import BucketReduction, GradBucket, UserHookReduction
from .engine.autograd.engine import queue_callback  # noqa: F401  (parallel.py's import path for it)
from .engine.flat import FlatParameters, pack_parameters
from .errors import DistrainError
from .timeline import current as current_timeline

_identities = itertools.count()


def reduction_for(compression):
    """DDP's gradient_compression= as a BucketReduction (fp16 divides by the world size before the sum)."""
    if compression not in GradientReducer.COMPRESSIONS:
        raise ValueError(f"gradient_compression must be one of {GradientReducer.COMPRESSIONS}, got {compression!r}")
    return BucketReduction("average", compression, predivide=None if compression else 1.0)


class GradientReducer:
    """Reduces the gradients of `parameters` over `comm`'s ranks while backward runs (module docstring).

    `arm()` before a backward, and `finish()` after it (DDP: at the end of backward;
    DistributedOptimizer: in synchronize()).
    """

    COMPRESSIONS = (None, "fp16")

    def __init__(self, comm, parameters, bucket_cap_bytes, compression=None, owner="GradientReducer",
                 count_backwards=False, reduction=None, passes_per_reduction=1, announces=False):
        self.comm = comm
        self.flats = pack_parameters(parameters)
        self.buckets = self._make_buckets(self.flats, bucket_cap_bytes)
        self.identity = next(_identities)  # the same on every rank that builds its reducers in the same order
        self.passes_per_reduction = int(passes_per_reduction)
        self.announces = announces
        # what the timeline calls a bucket's reduction (NOTE [ Timeline of the buckets ])
        self.operation = "push/pull" if getattr(comm, "name", None) == "ps" else "allreduce"
        self.set_reduction(reduction if reduction is not None else reduction_for(compression))
        self._bucket_of = {}
        for bucket in self.buckets:
            for parameter in bucket["params"]:
                self._bucket_of[id(parameter)] = bucket
                parameter.register_post_accumulate_grad_hook(self._gradient_ready)
        self._handles = []
        self._bucket_events = {}  # index in _handles -> (timeline, start ns, bucket), only while a timeline is on
        self._announcement = None
        self._passes_left = {}
        self.wait_seconds = 0.0  # how long finish() has waited for reductions in all: the exposed communication
        self.reductions = 0  # how many reductions this rank has finished
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
        for index, bucket in enumerate(buckets):
            bucket["index"] = index
            bucket["offsets"] = [(offset - bucket["start"], size)
                                 for offset, size in (bucket["flat"].segment(p) for p in bucket["params"])]
        return buckets

    def set_reduction(self, reduction):
        """Use `reduction` (a BucketReduction or UserHookReduction) for every bucket from now on."""
        self.reduction = reduction
        for bucket in self.buckets:
            gradient = bucket["flat"].grad[bucket["start"]:bucket["end"]]
            bucket["wire"] = reduction.wire_for(gradient)
            travels = reduction.travelling(gradient, bucket["wire"])
            bucket["timeline_args"] = {"bucket": bucket["index"], "bytes": int(travels.nbytes),
                                       "dtype": str(travels.dtype), "parameters": len(bucket["params"]),
                                       "backend": getattr(self.comm, "name", "?")}

    def broadcast_from(self, root=0):
        for flat in self.flats:
            self.comm.broadcast(flat.data, root=root)

    def arm(self):
        """The next backward's gradients are to be reduced."""
        for bucket in self.buckets:
            bucket["waiting"] = len(bucket["params"])
        if self.passes_per_reduction > 1:
            self._passes_left = {id(p): self.passes_per_reduction for b in self.buckets for p in b["params"]}
        self._next_bucket = 0
        self._handles = []
        self._bucket_events = {}
        self._announcement = None
        self.armed = True

    @property
    def gradients_pending(self) -> bool:
        """True between a backward that reached the parameters and the reduction that averages it."""
        return self.armed and (self._next_bucket > 0 or any(b["waiting"] < len(b["params"]) for b in self.buckets)
                               or any(left < self.passes_per_reduction for left in self._passes_left.values()))

    def _gradient_ready(self, parameter):
        if self.count_backwards and not self.backward_counted:  # NOTE [ sequence check ]
            self.position += 1
            self.backward_counted = True
        if not self.armed:
            return  # no_sync(), or a further backward of a forward already reduced: local, as in PyTorch
        for handle, _ in self._handles:  # NOTE [ MPI progress ] (parallel.py): let MPI move the reductions
            handle.is_completed()
        if self._bucket_events:
            self._record_finished_buckets(self._handles, self._bucket_events)
        if self.passes_per_reduction > 1:
            left = self._passes_left[id(parameter)] - 1
            self._passes_left[id(parameter)] = left
            if left > 0:
                return  # accumulate locally (Horovod's backward_passes_per_step)
            if left < 0:
                raise self._too_many_backwards()
        bucket = self._bucket_of[id(parameter)]
        bucket["waiting"] -= 1
        if bucket["waiting"] < 0:
            raise self._too_many_backwards()
        self._launch_ready_buckets()

    def _too_many_backwards(self):
        if self.passes_per_reduction > 1:
            return DistrainError(
                f"{self.owner}: rank {self.comm.rank}: a parameter's gradient arrived more than "
                f"backward_passes_per_step={self.passes_per_reduction} times before step(); call step() after that "
                "many backward passes, or raise backward_passes_per_step")
        return DistrainError(
            f"{self.owner}: rank {self.comm.rank}: a parameter's gradient arrived twice before its average was taken "
            "(two backwards per step?): its bucket's allreduce is already under way. Call step() after each "
            "backward, or sum the losses and run one backward (DistributedOptimizer: or backward_passes_per_step=N "
            "to accumulate N passes)")

    def _launch_ready_buckets(self):
        """Start the reductions of the ready buckets, always in bucket order.

        Every rank must issue its collectives in the same order (MPI matches them by order,
        and a mismatch mixes up buckets or hangs). Gradients may become ready in another
        order on some rank (a different branch finishing first), so a bucket waits for the
        ones before it; in the usual case, reverse parameter order, nothing waits.
        """
        while self._next_bucket < len(self.buckets) and self.buckets[self._next_bucket]["waiting"] == 0:
            self._launch(self.buckets[self._next_bucket])
            self._next_bucket += 1

    def _launch(self, bucket):
        if self.announces and self._announcement is None:  # NOTE [ join ]: before this reduction's first collective
            self._announcement = self.announce()
        timeline = current_timeline()
        if timeline is not None:  # NOTE [ Timeline of the buckets ]
            self._bucket_events[len(self._handles)] = (timeline, timeline.now_ns(), bucket)
        flat = bucket["flat"]
        for parameter in bucket["params"]:
            if not FlatParameters.grad_is_flat(parameter):
                self._adopt_gradient(parameter, flat)
        self._handles.append(self._start(bucket, flat.grad[bucket["start"]:bucket["end"]]))

    def _start(self, bucket, gradient):
        """(Handle, completion) of one bucket's reduction of `gradient`, by this reducer's reduction."""
        if isinstance(self.reduction, UserHookReduction):
            grad_bucket = GradBucket(bucket["index"], gradient, bucket["params"], bucket["offsets"],
                                     bucket["index"] == len(self.buckets) - 1)
            return self.reduction.start_bucket(grad_bucket)
        return self.reduction.start(self.comm, gradient, bucket["wire"], bucket["offsets"])

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
        inflight = []
        for bucket in self.buckets:
            flat = bucket["flat"]
            zeros = flat.array_module.zeros(bucket["end"] - bucket["start"], dtype=flat.grad.dtype)
            inflight.append(self._start(bucket, zeros))
        self._complete(inflight, None)

    def finish(self):
        """Reduce what has not been (unused parameters' zeros), then wait for every reduction."""
        if not self.armed:
            return
        self.armed = False
        for bucket in self.buckets[self._next_bucket:]:
            self._launch(bucket)  # unused parameters' buckets (their zeros), in order
        if self.announces and self._announcement is None:
            self._announcement = self.announce()
        self.backward_counted = False  # a further backward of this forward counts again
        handles, self._handles = self._handles, []
        events, self._bucket_events = self._bucket_events, {}
        timeline = current_timeline() if events else None
        waited_since = timeline.now_ns() if timeline is not None else None
        wait_started = time.perf_counter()
        if self._announcement is not None:
            self._announcement[1].wait()
        self._complete(handles, self.position, events)
        self.reductions += 1
        self.wait_seconds += time.perf_counter() - wait_started  # communication that backward did not hide
        if timeline is not None:
            timeline.complete(f"wait for {self.operation}", "comm", waited_since)

    def _complete(self, inflight, position, events=None):
        """Wait for every reduction in `inflight` (in order), finishing each, then the sequence check."""
        sequence = self._start_sequence_check(position)
        for handle, complete in inflight:
            handle.wait()
            if complete is not None:
                complete()
            if events:
                self._record_finished_buckets(inflight, events)
        self._finish_sequence_check(sequence)

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

    # NOTE [ join ]
    # A rank that runs out of data (DistributedDataParallel.join, Horovod's join()) must take
    # part in the reductions the other ranks still run, with zeros, or they hang. Before each
    # reduction the ranks still training send an announcement: one allreduce (sum) of 2*size+1
    # int64s, [1 in their own slot of the first `size` | 0 | this reducer's identity + 1]. A
    # joined rank loops on the same allreduce with zeros (and, in its first round, a 1 in its
    # slot of the second `size`): while someone runs, it learns which reducer is reducing and
    # shadows it (zeros through the same buckets and reduction, then the sequence check); once
    # nobody runs, every rank is in the loop and all leave it together. The second part of that
    # last round says who joined last (Horovod's join() returns it). DDP announces with a
    # blocking allreduce in forward, inside join() only (it needs the rank whose buffers to
    # broadcast); DistributedOptimizer's reducer announces without blocking before the first
    # bucket of every reduction, so a Horovod program may call join() at any time.
    def announce(self):
        """(flags, Handle) of this running rank's announcement of a reduction (NOTE [ join ])."""
        size = self.comm.size
        flags = numpy.zeros(2 * size + 1, dtype=numpy.int64)
        flags[self.comm.rank] = 1
        flags[2 * size] = self.identity + 1
        return flags, self.comm.allreduce_async(flags, "sum")

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

    def catch_up(self):
        """After a join: every rank takes the furthest position (ranks that ran out of data did fewer steps)."""
        position = numpy.array([self.position], dtype=numpy.int64)
        self.position = int(self.comm.allreduce(position, "max")[0])


def shadow_until_everyone_joined(comm, reducers, before_shadow=None, who="join()", count_steps=False):
    """A joined rank's loop (NOTE [ join ]): shadow the running ranks' reductions until every rank has joined.

    `reducers` maps identities to this rank's reducers; `before_shadow(running ranks)` runs
    before each shadowed reduction (DDP broadcasts buffers there). With `count_steps`, each
    shadowed reduction moves its reducer's position on by one, as the step it stands for
    does on the running ranks (DistributedOptimizer's positions count steps), so the ranks
    are in step afterwards with no further collective. Returns the rank that joined last
    (the highest of those that joined in the last round).
    """
    size = comm.size
    first_round = True
    while True:
        flags = numpy.zeros(2 * size + 1, dtype=numpy.int64)
        if first_round:
            flags[size + comm.rank] = 1
            first_round = False
        comm.allreduce(flags, "sum")
        running = numpy.flatnonzero(flags[:size])
        if running.size == 0:
            return int(numpy.flatnonzero(flags[size:2 * size]).max())
        identity = int(flags[2 * size]) // running.size - 1
        reducer = reducers.get(identity)
        if reducer is None:
            raise DistrainError(
                f"{who}: rank {comm.rank} ran out of data while ranks {running.tolist()} reduce the gradients of a "
                f"model or optimizer this rank does not wait for here (reducer {identity}; this rank has "
                f"{sorted(reducers)}). Every rank must build the same models and optimizers in the same order")
        if before_shadow is not None:
            before_shadow(running)
        reducer.shadow()
        if count_steps:
            reducer.position += 1


__all__ = ["GradientReducer", "reduction_for", "shadow_until_everyone_joined"]
