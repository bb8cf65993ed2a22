"""`distrain.multiprocessing`: Python's multiprocessing plus `spawn`, as `torch.multiprocessing` is.

Everything of the standard `multiprocessing` module is here under the same names
(`Process`, `Queue`, `SimpleQueue`, `Pool`, `Lock`, `Barrier`, `Event`, `Manager`,
`get_context`, `set_start_method`, ...). What distrain adds:

- CPU tensors moved into shared memory (`tensor.share_memory_()`, `module.share_memory()`)
  travel to other processes as handles to the same memory, through Process arguments (under
  "fork", "spawn" and "forkserver") and Queues: writes in one process are seen by all, which
  is Hogwild-style training (NOTE [ Shared tensors between processes ] in
  engine/shared_memory.py). Other tensors are copied, as in PyTorch.
- `spawn(fn, args, nprocs)` / `start_processes`: run fn(i, *args) in nprocs processes, with
  a child's exception (traceback and index) re-raised in the parent, the other children
  terminated, and children that die with the parent (spawn.py).
- Processes started by `spawn` share a job secret (set in the environment when none is),
  so that they can rendezvous with `distrain.distributed.init_process_group` and no launcher.

Example::

    >>> import distrain.multiprocessing as mp
    >>> model = distrain.nn.Linear(4, 2).share_memory()
    >>> workers = [mp.Process(target=train, args=(rank, model)) for rank in range(2)]
"""
import multiprocessing as _multiprocessing
from multiprocessing import *  # noqa: F401,F403  (torch.multiprocessing re-exports it the same way)

from ..errors import ArgumentError
from .spawn import (ProcessContext, ProcessException, ProcessExitedException, ProcessRaisedException, SpawnContext,
                    spawn, start_processes)

_SHARING_STRATEGIES = ("file_descriptor", "file_system")


def get_all_sharing_strategies():
    """The names PyTorch programs pass to `set_sharing_strategy`; distrain accepts both.

    distrain has one mechanism: descriptors of anonymous shared memory, passed between the
    processes. It needs few descriptors (a model's parameters share one buffer per dtype),
    which is why PyTorch users switch to "file_system", and leaves nothing in /dev/shm.
    """
    return set(_SHARING_STRATEGIES)


_sharing_strategy = "file_descriptor"


def get_sharing_strategy():
    return _sharing_strategy


def set_sharing_strategy(new_strategy):
    """Accept PyTorch's strategy names (both use distrain's one mechanism, see get_all_sharing_strategies)."""
    global _sharing_strategy
    if new_strategy not in _SHARING_STRATEGIES:
        raise ArgumentError(f"unknown sharing strategy {new_strategy!r}; use one of {list(_SHARING_STRATEGIES)}")
    _sharing_strategy = new_strategy


__all__ = [*_multiprocessing.__all__, "ProcessContext", "ProcessException", "ProcessExitedException",
           "ProcessRaisedException", "SpawnContext", "spawn", "start_processes", "get_all_sharing_strategies",
           "get_sharing_strategy", "set_sharing_strategy"]
