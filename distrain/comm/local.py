"""A world of one process: every collective leaves the data as it is, at no cost."""
from __future__ import annotations

from .base import Communicator, DoneHandle, check_op


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
