"""A world of one process: every collective leaves the data as it is, at no cost."""
from __future__ import annotations

from .base import Communicator, DoneHandle, check_op
from .p2p import check_peer, split_ranks


class LocalCommunicator(Communicator):
    name = "local"

    def __init__(self, timeout=None):
        self.timeout = timeout  # nothing ever waits in a world of one

    def allreduce_async(self, array, op="sum"):
        check_op(op)  # sum, mean, max and min of one array are the array itself
        return DoneHandle()

    def broadcast(self, array, root=0):
        if root != 0:
            raise ValueError(f"broadcast root {root} does not exist in a world of one (rank 0)")
        return array

    def allgather(self, array):
        return array[None]

    def barrier(self):
        return None

    def isend(self, array, dst, tag=0):
        check_peer(self, dst, "send", "dst")  # a world of one has no other rank: this raises, naming dst

    def irecv(self, array, src=None, tag=0):
        if src is None:
            raise ValueError("recv: a world of one has no other rank to receive from")
        check_peer(self, src, "recv", "src")

    def split(self, ranks):
        split_ranks(self, ranks)
        return LocalCommunicator(self.timeout)  # the one rank, again
