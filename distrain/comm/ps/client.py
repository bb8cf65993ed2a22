"""The ranks' side of the parameter server: a Communicator whose collectives go through it.

    python -m distrain.launch -n 4 --backend ps train.py     # starts a server and 4 ranks
    distrain.distributed.init("ps")                          # in train.py: address, rank, size from the launcher

Every collective is one request to the server (server.py) and one answer back. The
requests go out at once and ZeroMQ's own I/O thread moves the bytes, so a non-blocking
allreduce really proceeds while backward computes, with no polling needed from the
training loop (unlike MPICH: NOTE [ MPI progress ] in parallel.py).

`ServerConnection` is the request/answer machinery (also the launcher's rendezvous store
for the NCCL backend); `PSCommunicator` turns it into the Communicator interface.
"""
from __future__ import annotations

import os
import time

import numpy
import zmq

from ..base import (
    DEFAULT_TIMEOUT,
    Communicator,
    CommunicatorError,
    Handle,
    check_op,
    check_root,
    contiguous_copy_if_needed,
    host_staging,
    launched_rank_or_fail,
)
from . import protocol
from .protocol import ProtocolError

SERVER_GRACE_SECONDS = 5.0  # extra wait for the server's "rank k never joined" answer before blaming the server


class PSHandle(Handle):
    """One request in flight; `wait()` returns when the server has answered (or raises why not)."""

    def __init__(self, connection, seq, what, finish=None):
        self.connection = connection
        self.seq = seq
        self.what = what
        self.finish = finish
        self.done = False
        self.answer = None
        self.error = None

    def is_completed(self):
        if not self.done:
            self.connection.pump(0)
        return self.done

    def wait(self, timeout=None):
        if self.done:
            return self._result()
        timeout = self.connection.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout + SERVER_GRACE_SECONDS
        while not self.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommunicatorError(
                    f"rank {self.connection.rank}: the parameter server at {self.connection.address} did not answer "
                    f"{self.what} within {timeout:g} s: is the server running and reachable, with the same secret?")
            self.connection.pump(remaining)
        return self._result()

    def _result(self):
        if self.error is not None:
            raise CommunicatorError(f"rank {self.connection.rank}: {self.what} failed: {self.error}")
        return self.answer

    def _answered(self, header, payload):
        """Called by the connection when the server's answer arrives; an error is raised by wait()."""
        self.done = True
        if "error" in header:
            self.error = str(header["error"])
            return
        self.answer = (header, payload)
        if self.finish is not None:
            self.finish(header, payload)


class ServerConnection:
    """A rank's connection to the server: numbered, authenticated requests and their answers."""

    def __init__(self, address, rank, world_size, secret=None, timeout=DEFAULT_TIMEOUT):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1} (world size {world_size})")
        self.address = address
        self.rank = rank
        self.world_size = world_size
        self.timeout = float(timeout)
        self.secret = protocol.load_secret(secret)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        for option, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0)):
            self.socket.setsockopt(option, value)
        self.socket.connect(address)
        self.seq = 0
        self.session = None
        self.in_flight = {}  # seq -> PSHandle
        try:  # hello asks for the server's session token; join, which carries it, takes this rank's place
            answer, _ = self.request({"op": "hello"}, what="contacting the server").wait()
            if not isinstance(answer.get("session"), bytes):
                raise CommunicatorError(f"rank {rank}: the server at {address} sent no session token")
            self.session = answer["session"]
            self.request({"op": "join", "world_size": world_size, "timeout": self.timeout,
                          "version": protocol.PROTOCOL_VERSION}, what="joining").wait()
        except BaseException:
            self.session = None
            self._close_socket()
            raise

    def request(self, header, payload=b"", what=None, finish=None):
        """Send one request; the returned handle completes when its answer arrives."""
        header = {**header, "rank": self.rank, "seq": self.seq}
        if self.session is not None:
            header["session"] = self.session
        handle = PSHandle(self, self.seq, what or header["op"], finish)
        self.in_flight[self.seq] = handle
        self.seq += 1
        self.socket.send_multipart(protocol.pack(header, payload, self.secret), copy=False)
        return handle

    def pump(self, timeout):
        """Deliver the answers that arrive within `timeout` seconds (at least one, if any comes)."""
        if not self.socket.poll(max(0, int(timeout * 1000))):
            return
        while self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = self.socket.recv_multipart(copy=False)
            try:
                header, payload = protocol.unpack(frames, self.secret, protocol.REPLY)
            except ProtocolError as error:
                raise CommunicatorError(f"rank {self.rank}: unreadable answer from the parameter server at "
                                        f"{self.address}: {error}") from None
            if self.session is not None and header.get("session") != self.session:
                continue  # an answer from another session (replayed): not ours
            handle = self.in_flight.pop(header.get("seq"), None)
            if handle is not None:
                handle._answered(header, payload)

    # -- the rendezvous store ---------------------------------------------------------------
    def store_set(self, key, value: bytes):
        self.request({"op": "store_set", "key": key}, value, what=f"setting rendezvous key {key!r}").wait()

    def store_get(self, key) -> bytes:
        """The value some rank set under `key`, waiting (up to the timeout) until one does."""
        _, payload = self.request({"op": "store_get", "key": key}, what=f"reading rendezvous key {key!r}").wait()
        return bytes(payload)

    def close(self):
        if self.socket.closed:
            return
        try:
            if self.session is not None:
                self.request({"op": "bye"}).wait(timeout=min(self.timeout, 5.0))
        except CommunicatorError:
            pass  # the server is gone already: nothing left to tell it
        finally:
            self._close_socket()

    def _close_socket(self):
        self.socket.close(linger=0)
        self.context.term()


class PSCommunicator(Communicator):
    """Collectives through a parameter server at `address` (default $DISTRAIN_PS_ADDRESS)."""

    name = "ps"

    def __init__(self, address=None, rank=None, world_size=None, secret=None, timeout=DEFAULT_TIMEOUT):
        address = address or os.environ.get(protocol.ADDRESS_ENVIRONMENT_VARIABLE)
        if not address:
            raise ValueError(f"the parameter-server backend needs the server's address: set "
                             f"{protocol.ADDRESS_ENVIRONMENT_VARIABLE} or pass address= (the launcher does it for you: "
                             "python -m distrain.launch -n N --backend ps script.py)")
        if rank is None or world_size is None:
            rank, world_size, self.local_rank, self.local_size = launched_rank_or_fail("ps")
        else:
            self.local_rank, self.local_size = rank, world_size
        self.connection = ServerConnection(address, rank, world_size, secret, timeout)
        self.rank, self.size = rank, world_size
        self.timeout = float(timeout)
        self.collectives = 0

    def _collective(self, op, fields, payload, what, finish=None):
        header = {"op": op, "index": self.collectives, **fields}
        self.collectives += 1
        return self.connection.request(header, payload, what=f"{what} (collective #{header['index']})", finish=finish)

    @staticmethod
    def _fields(array):
        return {"dtype": array.dtype.name, "shape": list(array.shape)}

    def allreduce_async(self, array, op="sum"):
        check_op(op)
        host, copy_back = host_staging(array, "allreduce")
        if op == "mean" and host.dtype.kind not in "fc":
            raise TypeError(f"allreduce op 'mean' needs a floating-point array, got {host.dtype}")

        def finish(header, payload):
            numpy.copyto(host, protocol.payload_array({**self._fields(host), "op": "allreduce"}, payload))
            if op == "mean":
                numpy.divide(host, self.size, out=host)
            if copy_back is not None:
                copy_back()

        fields = {**self._fields(host), "reduce": "sum" if op == "mean" else op}
        return self._collective("allreduce", fields, host, f"allreduce({op}) of {host.nbytes} bytes", finish)

    def broadcast(self, array, root=0):
        check_root(self, root)
        host, copy_back = host_staging(array, "broadcast")

        def finish(header, payload):
            if self.rank != root:
                numpy.copyto(host, protocol.payload_array({**self._fields(host), "op": "broadcast"}, payload))
                if copy_back is not None:
                    copy_back()

        self._collective("broadcast", {**self._fields(host), "root": root}, host if self.rank == root else b"",
                         f"broadcast from rank {root}", finish).wait()
        return array

    def allgather(self, array):
        host, _ = host_staging(contiguous_copy_if_needed(array), "allgather")
        _, payload = self._collective("allgather", self._fields(host), host, f"allgather of {host.nbytes} bytes").wait()
        shape = [self.size, *host.shape]
        out = protocol.payload_array({"dtype": host.dtype.name, "shape": shape, "op": "allgather"}, payload).copy()
        if not isinstance(array, numpy.ndarray):
            import cupy

            return cupy.asarray(out)
        return out

    def barrier(self):
        self._collective("barrier", {}, b"", "barrier").wait()

    def close(self):
        self.connection.close()


__all__ = ["DEFAULT_TIMEOUT", "PSCommunicator", "PSHandle", "ServerConnection"]
