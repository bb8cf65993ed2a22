"""Start every rank from the same state: broadcast_parameters, broadcast_optimizer_state, broadcast_object.

    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)     # e.g. after rank 0 resumed a checkpoint

Nothing is pickled (shared/DESIGN.md): arrays travel as arrays (communicator broadcasts),
and everything else as plain values (comm/plain_values.py: msgpack of None, bool, int,
float, str, bytes, lists, tuples and str-keyed dicts). broadcast_object takes plain
values only; anything else raises PlainValueError naming its type, on every rank.
"""
from __future__ import annotations

import numpy

from ..comm.plain_values import PlainValueError, encode
from ..engine.backend import array_module
from ..engine.tensor import Tensor
from .basics import communicator
from .ops import HorovodError


def _from_root(comm, value, root_rank, what):
    """root_rank's plain `value` on every rank; if root's is not plain, every rank raises naming its type."""
    if not 0 <= root_rank < comm.size:
        raise HorovodError(f"hvd.{what}: root_rank={root_rank} is not a rank of this world of {comm.size}")
    message = None
    if comm.rank == root_rank:
        try:
            encode(value, f"hvd.{what}'s value")
            message = [True, value]
        except PlainValueError as error:  # told to every rank, so that none waits for a value that never comes
            message = [False, str(error)]
    ok, payload = comm.allgather_object(message)[root_rank]
    if not ok:
        raise PlainValueError(f"hvd.{what} on rank {comm.rank}: rank {root_rank}'s value cannot travel between ranks: "
                              f"{payload}")
    return payload


def broadcast_object(obj, root_rank=0, name=None, process_set=None):
    """root_rank's plain value `obj` on every rank (the others' `obj` is ignored)."""
    return _from_root(communicator("broadcast_object"), obj, root_rank, "broadcast_object")


def _broadcast_arrays(comm, arrays, root_rank):
    """Overwrite each array with root_rank's, one broadcast per dtype (their concatenation), in place."""
    groups = {}
    for array in arrays:
        groups.setdefault((type(array), array.dtype.str), []).append(array)
    for group in groups.values():
        xp = array_module(group[0])
        joined = xp.concatenate([array.reshape(-1) for array in group])
        comm.broadcast(joined, root=root_rank)
        offset = 0
        for array in group:
            array[...] = joined[offset:offset + array.size].reshape(array.shape)
            offset += array.size


def broadcast_parameters(params, root_rank=0, process_set=None, *, comm=None):
    """Overwrite every rank's tensors with root_rank's: a state_dict(), named_parameters(), or a list of tensors.

    A dict is taken in sorted key order (as Horovod does), so ranks whose dicts were built
    in different orders still pair the right tensors.
    """
    if process_set is not None:
        raise HorovodError("hvd.broadcast_parameters: process sets are not supported; leave process_set out")
    comm = communicator("broadcast_parameters") if comm is None else comm
    if hasattr(params, "items"):
        items = sorted(params.items(), key=lambda item: item[0])
    else:
        items = [item if isinstance(item, tuple) else (None, item) for item in params]
    for name, tensor in items:
        if not isinstance(tensor, Tensor):
            raise HorovodError(f"hvd.broadcast_parameters: {name or 'an entry'} is a {type(tensor).__name__}, not a "
                               "Tensor; pass model.state_dict(), model.named_parameters() or a list of tensors")
    _broadcast_arrays(comm, [tensor._data for _, tensor in items], root_rank)
    for _, tensor in items:
        tensor._version_counter[0] += 1


def broadcast_optimizer_state(optimizer, root_rank=0, prefix="Parameter.", process_set=None):
    """Make every rank's optimizer state root_rank's: per-parameter state (momentum buffers, Adam's moments, step
    counts) and each param group's hyperparameters (lr, momentum, betas, ...).

    The structure of root's state_dict() (which parameters have state, its names, shapes,
    dtypes and plain values, the groups' hyperparameters) travels as one plain value; the
    arrays follow in broadcasts. Ranks that have not stepped yet (no state) get root's.
    """
    if process_set is not None:
        raise HorovodError("hvd.broadcast_optimizer_state: process sets are not supported; leave process_set out")
    comm = communicator("broadcast_optimizer_state")
    state_dict = optimizer.state_dict()
    structure = None
    if comm.rank == root_rank:
        structure = {"param_groups": [dict(group) for group in state_dict["param_groups"]],
                     "state": {str(index): {name: _describe(value) for name, value in values.items()}
                               for index, values in state_dict["state"].items()}}
    structure = _from_root(comm, structure, root_rank, "broadcast_optimizer_state")
    state, arrays = {}, []
    for index in sorted(structure["state"], key=int):
        entry = {}
        for name, (kind, *details) in sorted(structure["state"][index].items()):
            if kind == "array":
                shape, dtype = details
                mine = state_dict["state"].get(int(index), {}).get(name) if comm.rank == root_rank else None
                array = _array_of(mine).copy() if mine is not None else numpy.empty(shape, dtype=dtype)
                arrays.append(array)
                entry[name] = array
            else:
                entry[name] = details[0]
        state[int(index)] = entry
    _broadcast_arrays(comm, arrays, root_rank)
    optimizer.load_state_dict({"state": state, "param_groups": structure["param_groups"]})


def _array_of(value):
    data = value._data if isinstance(value, Tensor) else value
    return numpy.asarray(data) if isinstance(data, numpy.ndarray) else data.get()  # state broadcasts through host


def _describe(value):
    if isinstance(value, Tensor) or hasattr(value, "__array_interface__") or hasattr(value,
                                                                                      "__cuda_array_interface__"):
        array = value._data if isinstance(value, Tensor) else value
        return ["array", list(array.shape), array.dtype.str]
    return ["value", value]


__all__ = ["broadcast_object", "broadcast_optimizer_state", "broadcast_parameters"]
