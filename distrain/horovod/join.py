"""hvd.join(): a rank that ran out of data keeps the others' DistributedOptimizer steps going, with zeros.

    for batch in my_batches:              # some ranks have fewer than others
        ...backward, optimizer.step()...
    last = hvd.join()                     # returns once every rank has joined: the rank that joined last

Every DistributedOptimizer announces each of its reductions (NOTE [ join ] in
gradient_reducer.py); a rank inside join() answers each announcement by reducing zeros
through the same buckets, as DistributedDataParallel.join does, until every rank has
joined. Averages are still divided by the whole world size, so a step that only some
ranks take is weighted by the share of ranks that had data (as in DDP). While some rank
is inside join(), the others may step their DistributedOptimizers but no other hvd
collective (an allreduce of a metric would wait for the joined rank and time out,
naming it): call those after join(). Returns the rank that joined last (of several that
joined at once, the highest); the ranks that stopped early skipped the later steps, so
programs typically broadcast the parameters from it afterwards.
"""
from __future__ import annotations

import weakref

from ..gradient_reducer import shadow_until_everyone_joined
from .basics import communicator

_reducers = weakref.WeakValueDictionary()  # identity -> the reducer of each live DistributedOptimizer


def register(reducer):
    _reducers[reducer.identity] = reducer


def join(device=-1) -> int:
    """Wait, shadowing the other ranks' DistributedOptimizer steps with zeros, until every rank has joined."""
    comm = communicator("join")
    # no collective per optimizer here: which ones are still alive (weakly held) may differ between ranks
    return shadow_until_everyone_joined(comm, dict(_reducers), who="hvd.join()", count_steps=True)


__all__ = ["join"]
