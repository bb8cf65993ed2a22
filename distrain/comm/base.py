"""The communicator interface: what data-parallel training needs from "the other ranks".

Communicators know arrays (numpy or cupy), not Tensors or Modules (shared/DESIGN.md): the
reducer (parallel.py) is where the two meet. Every collective works in place on one
array; the non-blocking form returns a `Handle` to wait on, so a reducer can start an
allreduce as soon as a gradient bucket is ready and keep computing. Point-to-point
messages (send/recv, isend/irecv: p2p.py says what is checked) and subgroups (`split`)
follow the same rules: every wait has the communicator's timeout and names the rank it
waits for.

Which backend when (`create_communicator(name)`):

  =======  ==========================================  =====================================
  name     use it for                                  needs
  =======  ==========================================  =====================================
  local    one process (every call a no-op)            nothing
  mpi      CPU training on one or many machines under  mpi4py and an MPI (`pip install
           mpirun/srun; GPUs without NCCL (staged      'distrain[mpi]'` brings MPICH and
           through host memory)                        mpiexec)
  nccl     one GPU per rank, on one or many machines   cupy with NCCL (`distrain[gpu]`), and
           (the fastest for GPUs)                      MPI or the launcher's rendezvous
  ps       machines without MPI; elastic clusters      nothing beyond the core (pyzmq): a
           where a central server is simpler than      parameter server that the launcher
           MPI; no MPI on the machines                 starts, or `python -m
                                                       distrain.comm.ps.server`
  =======  ==========================================  =====================================
"""
from __future__ import annotations

import importlib
import time

import numpy

from ..errors import DistrainError

REDUCE_OPS = ("sum", "mean", "max", "min")
DEFAULT_TIMEOUT = 300.0  # seconds any wait on other ranks may take before it fails naming them
MAX_OBJECT_BYTES = 16 * 2 ** 20  # allgather_object is for small values (a model's parameter signature)
LOST_GRACE_SECONDS = 1.0  # how long a wait goes on after a peer is known lost (it may have done its part)


class CommunicatorError(DistrainError, RuntimeError):
    """A collective failed or timed out; the message names the ranks involved when known."""


class PeerLostError(CommunicatorError):
    """A collective cannot complete because a peer died or left; `lost` holds the liveness entries of the lost ranks."""

    def __init__(self, message, lost):
        super().__init__(message)
        self.lost = lost


class Handle:
    """A non-blocking collective in flight: `wait()` finishes it, `is_completed()` asks without blocking.

    `wait()` returns the operation's result: None for a collective or a send, the sender's
    rank for a receive.
    """

    def wait(self):
        raise NotImplementedError

    def is_completed(self) -> bool:
        raise NotImplementedError


class PollingHandle(Handle):
    """A collective finished by polling `_test()`; `wait` gives up after the communicator's timeout.

    Polling (rather than one blocking wait) is what lets a wait end in an error naming the
    problem instead of hanging forever when a rank never arrives (shared/DESIGN.md).
    Subclasses say how to test (`_test`), may wait more cleverly than sleeping between
    tests (`_pause`), and may clean up before the timeout error (`_on_timeout`).
    `finish`, if given, runs once, in the waiting thread, when the collective completes; what
    it returns is what `wait()` returns, and an error it raises is raised by every `wait()`.
    `peers`: for a point-to-point message, the ranks (of `communicator`) it waits for; only
    their loss ends the wait, and a timeout names them. Only the whole job's collectives
    are counted for the liveness hub (a subgroup's or a message's count would differ
    between ranks and mislead its report of who is missing).
    """

    def __init__(self, communicator, what, finish=None, peers=None):
        self.communicator = communicator
        self.what = what
        self.finish = finish
        self.peers = peers
        self.done = False
        self.result = None
        self.error = None
        monitor = communicator.monitor
        counted = monitor is not None and peers is None and communicator.global_ranks is None
        self.index = monitor.collective_started() if counted else None

    def _test(self) -> bool:
        raise NotImplementedError

    def _pause(self, seconds):
        time.sleep(seconds)

    def _on_timeout(self):
        """Called before the timeout error is raised (e.g. to abort a communicator stuck on the device)."""

    def is_completed(self):
        if not self.done and self._test():
            self._complete()
        return self.done

    def wait(self, timeout=None):
        if self.done:
            if self.error is not None:
                raise self.error
            return self.result
        timeout = self.communicator.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pause = 1e-6
        with PeerWatch(self.communicator, self.what, self.index, peers=self.peers) as watch:
            while not self._test():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._on_timeout()
                    raise watch.timeout_error(timeout)
                if watch.peer_lost():
                    self._on_timeout()
                    raise watch.lost_error()
                self._pause(min(pause, remaining))
                pause = min(pause * 2, 1e-3)
        self._complete()
        return self.result

    def _complete(self):
        self.done = True
        if self.finish is not None:
            try:
                self.result = self.finish()
            except Exception as error:
                self.error = error
                raise


class PeerWatch:
    """What every wait on other ranks watches besides its own collective: the liveness monitor.

    Entered around a wait: it tells the monitor which collective this rank waits in (the
    hub shows it to the other ranks), `peer_lost()` turns True once a peer it waits for has
    been lost for LOST_GRACE_SECONDS (it may have done its part just before leaving), and
    the errors name the lost rank, or on a timeout the ranks that did not arrive. Without a
    monitor (one rank, or liveness off) it only words the timeout. It waits for every other
    rank of `communicator`, or only for `peers` (a point-to-point message); ranks are named
    by their number in the whole job, which is what the monitor and the user's logs know.
    """

    def __init__(self, communicator, what, index=None, monitor=None, peers=None):
        self.group = getattr(communicator, "global_ranks", None)  # None: the whole job
        number = (lambda rank: rank) if self.group is None else self.group.__getitem__
        self.rank = number(communicator.rank)
        self.size = communicator.size
        self.monitor = communicator.monitor if monitor is None else monitor
        self.index = index
        self.what = what if index is None else f"{what} (collective #{index})"
        self.lost_since = None
        self.peers = peers
        members = range(communicator.size) if peers is None else peers
        self.watched = [number(rank) for rank in members if rank != communicator.rank]

    def __enter__(self):
        if self.monitor is not None:
            self.monitor.wait_began(self.what)
        return self

    def __exit__(self, *exception):
        if self.monitor is not None:
            self.monitor.wait_ended()

    def peer_lost(self):
        if self.monitor is None or not self.monitor.lost or not any(r in self.monitor.lost for r in self.watched):
            return False
        self.lost_since = self.lost_since or time.monotonic()
        return time.monotonic() - self.lost_since > LOST_GRACE_SECONDS

    def lost_error(self):
        lost = {rank: entry for rank, entry in self.monitor.lost.items() if rank in self.watched}
        return PeerLostError(f"rank {self.rank}: {self.what} cannot complete: {self.monitor.lost_peers_text(lost)}. "
                             "The job cannot go on without it; that rank's output says why it ended", lost)

    def timeout_error(self, timeout, cause=None):
        text = (f"rank {self.rank}: {self.what} did not complete within {timeout:g} s (the collective timeout: "
                f"distrain.distributed.init(timeout=...)){'; ' + cause if cause else ''}")
        if self.peers is not None:
            who = "no rank posted" if len(self.watched) > 1 else f"rank {self.watched[0]} did not post"
            return CommunicatorError(f"{text}; {who} the matching message (a crashed or stuck rank, or a different "
                                     "tag, source or group on the two sides)")
        if self.group is not None:
            return CommunicatorError(f"{text}; some of the group's ranks {list(self.group)} did not join it (a "
                                     "crashed or stuck rank, or ranks calling the group's collectives in different "
                                     "orders)")
        if self.monitor is None or self.index is None:
            return CommunicatorError(f"{text}; some of the {self.size} ranks did not join it (a crashed or stuck "
                                     "rank, or ranks calling collectives in different orders, e.g. uneven data)")
        return CommunicatorError(f"{text}; {self.monitor.missing_peers_text(self.index)} (a stuck rank, or ranks "
                                 "calling collectives in different orders, e.g. uneven data: see "
                                 "DistributedDataParallel.join)")


class DoneHandle(Handle):
    """A collective that finished when it was started (local, or a blocking fallback)."""

    def wait(self):
        return None

    def is_completed(self):
        return True


class Communicator:
    """One process's view of a group of `size` processes numbered 0..size-1 (`rank`).

    `local_rank`/`local_size` number the processes on this machine (to pick a GPU).
    Reductions: "sum", "mean", "max", "min", in place on `array`.
    """

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    name = "base"
    liveness = None  # the liveness side channel (liveness.py) when create_communicator started one
    global_ranks = None  # a subgroup's members by their rank in the whole job (None: this is the whole job)
    tag_limit = 2 ** 31 - 1  # point-to-point tags are 0..tag_limit-1 (NOTE [ Point-to-point messages ])

    def global_rank(self, rank):
        """The whole job's number of this communicator's rank `rank`."""
        return rank if self.global_ranks is None else self.global_ranks[rank]

    @property
    def monitor(self):
        """This rank's liveness monitor, or None (one rank, or a communicator built without create_communicator)."""
        return None if self.liveness is None else self.liveness.monitor

    def allreduce(self, array, op="sum"):
        """Combine `array` across ranks, in place; every rank ends with the result."""
        self.allreduce_async(array, op).wait()
        return array

    def allreduce_async(self, array, op="sum") -> Handle:
        raise NotImplementedError

    def broadcast(self, array, root=0):
        """Overwrite `array` on every rank with root's, in place."""
        raise NotImplementedError

    def allgather(self, array):
        """Every rank's `array` (same shape and dtype everywhere), stacked along a new first axis."""
        raise NotImplementedError

    def allgather_object(self, value):
        """Every rank's small plain `value`, as a list indexed by rank (on every backend, local included).

        Plain means None, bool, int, float, str, bytes, and lists, tuples and dicts with str
        keys of them (NumPy scalars become Python numbers); anything else raises
        `PlainValueError` naming it, before anything is sent. Values travel as msgpack
        (plain_values.py), never pickle: the bytes come from other processes, which on a
        parameter server means whoever joined as that rank, and unpickling runs the code
        they name. Two allgathers: the sizes, then the values padded to the largest.
        """
        from .plain_values import PlainValueError, decode, encode

        payload = numpy.frombuffer(encode(value, f"rank {self.rank}'s allgather_object value"), dtype=numpy.uint8)
        if payload.size > MAX_OBJECT_BYTES:
            raise PlainValueError(f"rank {self.rank}: allgather_object value of {payload.size} bytes is over the "
                                  f"{MAX_OBJECT_BYTES} byte limit for small values; send arrays with allgather")
        sizes = numpy.asarray(self.allgather(numpy.array([payload.size], dtype=numpy.int64)))[:, 0]
        for rank, size in enumerate(sizes.tolist()):  # checked before allocating what the others announce
            if not 0 <= size <= MAX_OBJECT_BYTES:
                raise CommunicatorError(f"rank {self.rank}: rank {rank} announced an allgather_object value of "
                                        f"{size} bytes (the limit is {MAX_OBJECT_BYTES}); is it a rank of this job "
                                        "running the same distrain?")
        padded = numpy.zeros(int(sizes.max()), dtype=numpy.uint8)
        padded[:payload.size] = payload
        gathered = numpy.asarray(self.allgather(padded))
        return [decode(gathered[r, :sizes[r]], f"rank {r}") for r in range(self.size)]

    def barrier(self):
        """Return once every rank has called barrier()."""
        raise NotImplementedError

    # -- point to point and subgroups (p2p.py: NOTE [ Point-to-point messages ], NOTE [ Subgroups ]) ------------
    def send(self, array, dst, tag=0):
        """Send `array` to rank `dst`; returns once `array` may be reused."""
        self.isend(array, dst, tag).wait()

    def recv(self, array, src=None, tag=0):
        """Fill `array` with the next message from rank `src` (None: any rank) with `tag`; returns the sender."""
        return self.irecv(array, src, tag).wait()

    def isend(self, array, dst, tag=0) -> Handle:
        """Start sending `array` to rank `dst`; don't change `array` before the handle's wait()."""
        from .p2p import unsupported

        raise NotImplementedError(unsupported(self, "point-to-point messages (send/recv)"))

    def irecv(self, array, src=None, tag=0) -> Handle:
        """Start receiving into `array`; the handle's wait() returns the sender's rank."""
        from .p2p import unsupported

        raise NotImplementedError(unsupported(self, "point-to-point messages (send/recv)"))

    group_key = 0  # the whole job; a subgroup's is the id its members agreed on (p2p.group_key)

    def split(self, ranks):
        """A communicator over `ranks` (ranks of this one), numbered 0..n-1 in their order here; None on the
        ranks not in it. Called by every member (NOTE [ Subgroups ] in p2p.py): they agree on the group's
        id first, then the backend makes it (`_subgroup`)."""
        from .p2p import agree_on_members, group_key, split_ranks, unsupported

        if type(self)._subgroup is Communicator._subgroup:
            raise NotImplementedError(unsupported(self, "subgroups (split)"))
        ranks = split_ranks(self, ranks)
        if self.rank not in ranks:
            return None
        splits = self.__dict__.setdefault("_splits", {})  # ranks -> how many groups of them this rank made here
        count = splits[ranks] = splits.get(ranks, 0) + 1
        key = group_key(self.group_key, ranks, count)
        agree_on_members(self, ranks, key)  # every member is here before the backend makes the group
        return self._subgroup(ranks, key)

    def _subgroup(self, ranks, key):
        """The backend's communicator over `ranks`, once they all agreed on the group id `key`."""
        raise NotImplementedError

    def close(self):
        """Release the communicator's resources (idempotent)."""

    def __repr__(self):
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


def host_staging(array, what):
    """(a C-contiguous NumPy array holding `array`'s values, a function writing a result back into `array` or None).

    For communicators that move host memory (mpi, ps): a NumPy array is used in place; a
    CuPy array is staged through the host after its producing kernels finish (handing MPI
    a buffer that a kernel is still writing gives silently wrong sums).
    """
    if isinstance(array, numpy.ndarray):
        if not array.flags.c_contiguous:
            raise ValueError(f"{what}: the array must be C-contiguous for an in-place collective "
                             f"(shape {array.shape}, strides {array.strides}); pass .copy() or a contiguous slice")
        if not array.dtype.isnative:
            raise ValueError(f"{what}: the array's byte order is not this machine's ({array.dtype.str}); "
                             f"convert it with .astype({array.dtype.newbyteorder('=').name!r})")
        return array, None
    if type(array).__module__.split(".")[0] != "cupy":
        raise TypeError(f"{what} needs a numpy or cupy array, got {type(array).__name__}; "
                        "wrap numbers in numpy.array(...) (the result is written into it)")
    import cupy

    cupy.cuda.get_current_stream().synchronize()
    host = cupy.asnumpy(array)
    return host, lambda: array.set(host)


def contiguous_copy_if_needed(array):
    """`array` itself when it is C-contiguous, else a C-contiguous copy (0-d arrays stay 0-d)."""
    if isinstance(array, numpy.ndarray) and not array.flags.c_contiguous:
        return array.copy(order="C")
    return array


def launched_rank_or_fail(backend):
    """(rank, world size, local rank, local size) from the launcher's environment (ranks.py), for a backend
    that cannot ask MPI; a clear error when no launcher set them."""
    from .ranks import discover_local_size, launched_ranks

    found = launched_ranks()
    if found is None:
        raise ValueError(f"the {backend!r} backend needs this process's rank: start it with "
                         f"`python -m distrain.launch -n N --backend {backend} script.py` (or another launcher that "
                         "sets RANK and WORLD_SIZE), or pass rank= and world_size=")
    rank, size, local_rank = found
    local_size = discover_local_size()
    return rank, size, local_rank, size if local_size is None else local_size


def check_root(communicator, root):
    if not 0 <= root < communicator.size:
        raise ValueError(f"root rank {root} does not exist: ranks are 0..{communicator.size - 1}")
    return root


def check_op(op):
    if op not in REDUCE_OPS:
        raise ValueError(f"reduction op must be one of {REDUCE_OPS}, got {op!r}")
    return op


_BACKENDS = {"local": ("distrain.comm.local", "LocalCommunicator", None),
             "mpi": ("distrain.comm.mpi", "MPICommunicator", "pip install 'distrain[mpi]' (mpi4py and MPICH)"),
             "nccl": ("distrain.comm.nccl", "NCCLCommunicator", "pip install 'distrain[gpu]' (CuPy with NCCL)"),
             "ps": ("distrain.comm.ps.client", "PSCommunicator", None)}


def create_communicator(name, liveness=True, **options):
    """The communicator called `name` (see the table in this module's docstring).

    With `liveness` (the default) and more than one rank, it also starts the liveness side
    channel (liveness.py): a dead or departed peer then ends a wait within seconds, and a
    collective timeout names the ranks that did not arrive. Starting it is a collective.
    """
    if name not in _BACKENDS:
        raise ValueError(f"unknown communicator backend {name!r}; one of {sorted(_BACKENDS)}")
    module_name, class_name, install = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"the {name!r} communicator needs {error.name}: {install}") from error
    communicator = getattr(module, class_name)(**options)
    if liveness:
        from . import liveness as side_channel

        try:
            communicator.liveness = side_channel.attach(communicator)
        except BaseException:
            communicator.close()
            raise
    return communicator
