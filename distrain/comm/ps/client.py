"""The ranks' side of the parameter server: a Communicator whose collectives go through it.

    python -m distrain.launch -n 4 --backend ps train.py     # starts a server and 4 ranks
    distrain.distributed.init("ps")                          # in train.py: address, rank, size from the launcher

Every collective is one request to the server (server.py) and one answer back. The
requests go out at once and ZeroMQ's own I/O thread moves the bytes, so a non-blocking
allreduce really proceeds while backward computes, with no polling needed from the
training loop (unlike MPICH: NOTE [ MPI progress ] in parallel.py).

`ServerConnection` is the request/answer machinery (also the launcher's rendezvous store
for the NCCL backend); `PSCommunicator` turns it into the Communicator interface. A job may
have several servers: a rank then holds a connection to each and splits its large
allreduces among them (NOTE [ Partitions on several servers ] in partitions.py). A rank
authenticates with the job's secret (the argument, else $DISTRAIN_PS_SECRET, else the file
named by $DISTRAIN_PS_SECRET_FILE; the launcher sets the first for its ranks): in its
connection's handshake (comm/zap.py), and, when the server's signed answer to hello says
so (a server beyond loopback), with a MAC on every message (protocol.py). Without a
secret a rank fails at once instead of going unanswered.
"""
from __future__ import annotations

import contextlib
import time

import numpy
import zmq
from zmq.utils.monitor import recv_monitor_message

from .. import zap
from ..base import (
    DEFAULT_TIMEOUT,
    Communicator,
    CommunicatorError,
    Handle,
    PeerWatch,
    check_op,
    check_root,
    contiguous_copy_if_needed,
    host_staging,
    launched_rank_or_fail,
)
from ..p2p import (
    check_peer,
    check_tag,
    describe,
    peers_of,
)
from . import modes, partitions, protocol
from .protocol import ProtocolError

LIVENESS_CHECK_SECONDS = 0.1  # how often a wait looks at the liveness monitor
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
        self.watch = None  # base.PeerWatch when the communicator has a liveness monitor
        self.timed_out = None  # the server's collective timeout, when that is how it failed
        self.timeout = None  # seconds wait() waits: the communicator's (a subgroup's may differ), else the connection's
        self.alongside = ()  # other connections whose loss also ends the wait (a partitioned allreduce's servers)

    def is_completed(self):
        if not self.done:
            self.connection.pump(0)
        return self.done

    def wait(self, timeout=None):
        if self.done:
            return self._result()
        timeout = (self.timeout or self.connection.timeout) if timeout is None else timeout
        deadline = time.monotonic() + timeout + SERVER_GRACE_SECONDS
        with self.watch or contextlib.nullcontext():
            while not self.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommunicatorError(
                        f"rank {self.connection.rank}: the parameter server at {self.connection.address} did not "
                        f"answer {self.what} within {timeout:g} s: is the server running and reachable, with the "
                        "same secret?")
                if self.watch is not None and self.watch.peer_lost():
                    raise self.watch.lost_error()
                for other in self.alongside:
                    other.pump(0)
                    if other.lost is not None:
                        raise CommunicatorError(f"rank {self.connection.rank}: {self.what} cannot complete: "
                                                f"{other.lost}")
                checks = self.watch is not None or self.alongside
                self.connection.pump(min(remaining, LIVENESS_CHECK_SECONDS) if checks else remaining)
        return self._result()

    def _result(self):
        if self.error is not None:
            if self.timed_out is not None and self.watch is not None:  # say what the missing ranks are doing
                raise self.watch.timeout_error(self.timed_out, cause=f"the parameter server says: {self.error}")
            raise CommunicatorError(f"rank {self.connection.rank}: {self.what} failed: {self.error}")
        return self.answer

    def _answered(self, header, payload):
        """Called by the connection when the server's answer arrives; an error is raised by wait().

        wait() returns what `finish` returns, or without one the answer itself (header, payload)."""
        self.done = True
        if "error" in header:
            self.error = str(header["error"])
            timed_out = header.get("timed_out")
            self.timed_out = float(timed_out) if isinstance(timed_out, (int, float)) else None
            return
        self.answer = (header, payload) if self.finish is None else self.finish(header, payload)


class ServerConnection:
    """A rank's connection to the server: numbered, authenticated requests and their answers.

    `layout`: (the job's server addresses, partition size in bytes), which the join tells the
    server (partitions.py); by default this server alone. `name` words the server in errors.
    A server that closes the connection once joined (its process died) fails every request
    in flight at once, naming it: the connection's ZeroMQ monitor reports the disconnection.
    """

    def __init__(self, address, rank, world_size, secret=None, timeout=DEFAULT_TIMEOUT, layout=None, name=None,
                 connect_timeout=None):
        """`connect_timeout`: how long the first answer (hello) may take, when not `timeout` (a rank reconnecting to
        a restarted server tries for a while, then says the server stayed down)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1} (world size {world_size})")
        self.address = address
        self.name = name or f"the parameter server at {address}"
        self.lost = None  # why this connection can no longer be used (its server went away), once it is
        self.rank = rank
        self.world_size = world_size
        self.timeout = float(timeout)
        self.secret = protocol.load_secret(secret)
        if self.secret is None:
            raise CommunicatorError(
                f"rank {rank}: no secret for the parameter server at {address}: every parameter-server job is "
                "authenticated. Start the ranks with `python -m distrain.launch -n N --backend ps` (it hands them a "
                f"fresh secret), or set {protocol.SECRET_FILE_ENVIRONMENT_VARIABLE} (or "
                f"{protocol.SECRET_ENVIRONMENT_VARIABLE}) to the server's secret")
        self.layout = layout  # kept for a reconnection (served_model.py)
        self.max_message_bytes = None  # the server's limit, from its hello
        self.signed = True  # MACs on every message? Until the server's (always signed) hello answer says
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        for option, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0)):
            self.socket.setsockopt(option, value)
        zap.present_credentials(self.socket, self.secret)
        self.events = self.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)  # before connect: no event missed
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)
        self.poller.register(self.events, zmq.POLLIN)
        self.socket.connect(address)
        self.seq = 0
        self.session = None
        self.in_flight = {}  # seq -> PSHandle
        try:  # hello asks for the server's session token; join, which carries it, takes this rank's place
            answer, _ = self.request({"op": "hello"}, what="contacting the server").wait(connect_timeout)
            limit = answer.get("max_message_bytes")
            if not isinstance(answer.get("session"), bytes) or type(limit) is not int or limit < 1 or \
                    not isinstance(answer.get("signed"), bool):
                raise CommunicatorError(f"rank {rank}: the server at {address} sent no session token, message "
                                        "size limit or signing mode: is it running the same distrain?")
            self.session, self.max_message_bytes, self.signed = answer["session"], limit, answer["signed"]
            servers, partition = layout or ((address,), partitions.DEFAULT_PARTITION_BYTES)
            self.request({"op": "join", "world_size": world_size, "timeout": self.timeout,
                          "version": protocol.PROTOCOL_VERSION, "servers": list(servers),
                          "partition_bytes": int(partition)}, what="joining").wait()
        except BaseException:
            self.session = None
            self._close_socket()
            raise

    def request(self, header, payload=b"", what=None, finish=None):
        """Send one request; the returned handle completes when its answer arrives.

        A payload over the server's limit raises here, before anything is sent or counted
        (the server would refuse it only once it had all arrived). The payload goes out as
        views of at most protocol.FRAME_BYTES each, never copied.
        """
        size = memoryview(protocol.payload_bytes(payload)).nbytes
        if self.max_message_bytes is not None and size > self.max_message_bytes:
            raise CommunicatorError(
                f"rank {self.rank}: {what or header['op']} would send {size} bytes, over the parameter server's "
                f"limit of {self.max_message_bytes} bytes ({self.max_message_bytes / 2 ** 20:g} MiB). Raise the "
                f"limit where the server starts (${protocol.MAX_MESSAGE_ENVIRONMENT_VARIABLE} in MiB for python -m "
                "distrain.launch, --max-message-mb for python -m distrain.comm.ps.server), or send less at once "
                "(DistributedDataParallel(bucket_cap_mb=...))")
        self._take_events()
        if self.lost is not None:
            raise CommunicatorError(f"rank {self.rank}: cannot send {what or header['op']}: {self.lost}")
        header = {**header, "rank": self.rank, "seq": self.seq}
        if self.session is not None:
            header["session"] = self.session
        handle = PSHandle(self, self.seq, what or header["op"], finish)
        self.in_flight[self.seq] = handle
        self.seq += 1
        signed = self.signed or header["op"] == "hello"  # a signed hello is what a server beyond loopback takes
        self.socket.send_multipart(protocol.pack(header, payload, self.secret, signed=signed), copy=False)
        return handle

    def pump(self, timeout):
        """Deliver the answers that arrive within `timeout` seconds (at least one, if any comes); once the
        server has gone, fail every request in flight."""
        ready = dict(self.poller.poll(max(0, int(timeout * 1000))))
        if self.socket in ready:
            self._deliver()
        if self.events in ready:
            self._take_events()

    def _deliver(self):
        while self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = self.socket.recv_multipart(copy=False)
            try:
                header, payload = protocol.unpack(frames, self.secret, protocol.REPLY, signed=self.signed)
            except ProtocolError as error:
                raise CommunicatorError(f"rank {self.rank}: unreadable answer from the parameter server at "
                                        f"{self.address}: {error}") from None
            if self.session is not None and header.get("session") != self.session:
                continue  # an answer from another session (replayed): not ours
            handle = self.in_flight.pop(header.get("seq"), None)
            if handle is not None:
                handle._answered(header, payload)

    def _take_events(self):
        """The monitor's news: a disconnection once joined means the server is gone (its process died or was
        stopped; a restarted one would not know this session), so nothing in flight will be answered."""
        while self.events.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            event = recv_monitor_message(self.events)
            if event["event"] != zmq.EVENT_DISCONNECTED or self.session is None or self.lost is not None:
                continue
            self._deliver()  # answers that arrived before it closed still count
            self.lost = (f"{self.name} closed its connection (the server process died or was stopped, or it heard "
                         "nothing from this process for its heartbeat timeout, 10 s by default: a process paused "
                         "in a debugger or a frozen machine; the launcher's output or the server's log says "
                         "which), and the job cannot go on without it")
            for handle in self.in_flight.values():
                handle._answered({"error": self.lost}, [])
            self.in_flight.clear()

    # -- the rendezvous store ---------------------------------------------------------------
    def store_set(self, key, value: bytes):
        self.request({"op": "store_set", "key": key}, value, what=f"setting rendezvous key {key!r}").wait()

    def store_get(self, key) -> bytes:
        """The value some rank set under `key`, waiting (up to the timeout) until one does."""
        _, payload = self.request({"op": "store_get", "key": key}, what=f"reading rendezvous key {key!r}").wait()
        return b"".join(payload)

    def close(self):
        if self.socket.closed:
            return
        try:
            if self.session is not None and self.lost is None:
                self.request({"op": "bye"}).wait(timeout=min(self.timeout, 5.0))
        except CommunicatorError:
            pass  # the server is gone already: nothing left to tell it
        finally:
            self._close_socket()

    def _close_socket(self):
        self.socket.disable_monitor()
        self.events.close(linger=0)
        self.socket.close(linger=0)
        self.context.term()


class PSCommunicator(Communicator):
    """Collectives through the parameter server(s) at `address` (default $DISTRAIN_PS_ADDRESSES, else
    $DISTRAIN_PS_ADDRESS): one address, or several (a comma-separated string or a sequence, server 0 first),
    among which large allreduces are split into partitions of `partition_mb` MiB (default
    $DISTRAIN_PS_PARTITION_MB, else 4): NOTE [ Partitions on several servers ] in partitions.py.

    A subgroup (`split`) shares its parent's connection to server 0 and its liveness; its
    requests name its group id, under which the server matches and sums them among its
    members only.
    """

    name = "ps"
    tag_limit = protocol.MAX_TAG

    def __init__(self, address=None, rank=None, world_size=None, secret=None, timeout=DEFAULT_TIMEOUT,
                 partition_mb=None, ps_mode=None, staleness=None, staleness_damping=None):
        addresses = partitions.server_addresses(address)
        self.partition_bytes = partitions.partition_bytes(partition_mb)
        # how DistributedDataParallel trains on this job by default (modes.py; NOTE [ Stale synchronous parallel ])
        self.ps_mode = modes.ps_mode(ps_mode)
        self.staleness = modes.staleness(staleness)
        self.staleness_damping = modes.damping(staleness_damping)
        if rank is None or world_size is None:
            rank, world_size, self.local_rank, self.local_size = launched_rank_or_fail("ps")
        else:
            self.local_rank, self.local_size = rank, world_size
        layout = (tuple(addresses), self.partition_bytes)
        self.connections = []  # server 0 first
        try:
            for number, server in enumerate(addresses):
                name = f"parameter server {number} of {len(addresses)} at {server}" if len(addresses) > 1 else None
                self.connections.append(ServerConnection(server, rank, world_size, secret, timeout, layout, name))
        except BaseException:
            for connection in self.connections:
                connection.close()
            raise
        self.connection = self.connections[0]
        self.rank, self.size = rank, world_size
        self.timeout = float(timeout)
        self.collectives = 0  # server 0's count: every request but the partitions on the other servers
        self.partition_collectives = [0] * len(self.connections)  # the other servers' counts (index 0 unused)

    def _collective(self, op, fields, payload, what, finish=None):
        return self._watch(self._request_collective(0, op, fields, payload, what, finish), what)

    def _request_collective(self, server, op, fields, payload, what, finish):
        """Send one collective to `server` (0, or another for a partition), numbered by that server's count."""
        index = self.collectives if server == 0 else self.partition_collectives[server]
        header = {"op": op, "group": self.group_key, "index": index, **fields}
        connection = self.connection if server == 0 else self.connections[server]
        handle = connection.request(header, payload, what=f"{what} (collective #{index})", finish=finish)
        if server == 0:  # counted only once sent: a request refused before sending leaves the ranks in step
            self.collectives += 1
        else:
            self.partition_collectives[server] += 1
        return handle

    def _watch(self, handle, what, peers=None):
        """With a liveness monitor, the handle's wait also watches for lost peers (base.PeerWatch); only the
        whole job's collectives are counted (PollingHandle says why)."""
        handle.timeout = self.timeout
        monitor = self.monitor
        if monitor is not None:
            counted = peers is None and self.global_ranks is None
            handle.watch = PeerWatch(self, what, monitor.collective_started() if counted else None, peers=peers)
        return handle

    @staticmethod
    def _fields(array):
        return {"dtype": array.dtype.name, "shape": list(array.shape)}

    def allreduce_async(self, array, op="sum"):
        check_op(op)
        host, copy_back = host_staging(array, "allreduce")
        if op == "mean" and host.dtype.kind not in "fc":
            raise TypeError(f"allreduce op 'mean' needs a floating-point array, got {host.dtype}")

        def done():
            if op == "mean":
                numpy.divide(host, self.size, out=host)
            if copy_back is not None:
                copy_back()

        reduce, what = "sum" if op == "mean" else op, f"allreduce({op}) of {host.nbytes} bytes"
        slices = None if self.global_ranks is not None else partitions.plan(
            host.size, host.itemsize, self.partition_bytes, len(self.connections))
        if slices is not None:
            return self._allreduce_in_partitions(host, slices, reduce, what, done)

        def finish(header, payload):
            protocol.copy_payload({**self._fields(host), "op": "allreduce"}, payload, host)
            done()

        return self._collective("allreduce", {**self._fields(host), "reduce": reduce}, host, what, finish)

    def _allreduce_in_partitions(self, host, slices, reduce, what, done):
        """Every slice to its server at once; each answer copied into its slice (NOTE [ Partitions on several
        servers ] in partitions.py)."""
        partitions.check_slices_fit(slices, self.connections, host.itemsize, self.rank, what)
        flat, parts = host.reshape(-1), []
        for number, (start, stop, server) in enumerate(slices):
            piece = flat[start:stop]
            fields = {"dtype": host.dtype.name, "shape": [stop - start], "reduce": reduce}
            parts.append(self._request_collective(
                server, "allreduce", fields, piece, f"{what}, partition {number + 1} of {len(slices)} "
                f"(elements {start}..{stop - 1}) on {self.connections[server].name}", _into(piece)))
        watched = self._watch(parts[0], what)  # one collective for the liveness monitor, however many parts
        for part in parts:
            part.watch, part.timeout = watched.watch, watched.timeout
            part.alongside = tuple(connection for connection in self.connections if connection is not part.connection)
        return partitions.PartitionedHandle(parts, done)

    def broadcast(self, array, root=0):
        check_root(self, root)
        host, copy_back = host_staging(array, "broadcast")

        def finish(header, payload):
            if self.rank != root:
                protocol.copy_payload({**self._fields(host), "op": "broadcast"}, payload, host)
                if copy_back is not None:
                    copy_back()

        self._collective("broadcast", {**self._fields(host), "root": root}, host if self.rank == root else b"",
                         f"broadcast from rank {root}", finish).wait()
        return array

    def allgather(self, array):
        host, _ = host_staging(contiguous_copy_if_needed(array), "allgather")
        _, payload = self._collective("allgather", self._fields(host), host, f"allgather of {host.nbytes} bytes").wait()
        shape = [self.size, *host.shape]
        out = numpy.empty(shape, host.dtype)
        protocol.copy_payload({"dtype": host.dtype.name, "shape": shape, "op": "allgather"}, payload, out)
        if not isinstance(array, numpy.ndarray):
            import cupy

            return cupy.asarray(out)
        return out

    def barrier(self):
        self._collective("barrier", {}, b"", "barrier").wait()

    # -- point to point (NOTE [ Point-to-point messages ] in p2p.py; the server's side: mailbox.py) --------------
    def isend(self, array, dst, tag=0):
        dst = check_peer(self, dst, "send", "dst")
        tag = check_tag(self, tag, "send")
        host, _ = host_staging(contiguous_copy_if_needed(array), "send")
        what = f"send of {describe(host.dtype, host.size)} to rank {self.global_rank(dst)} (tag {tag})"
        fields = {"group": self.group_key, "dst": self.global_rank(dst), "tag": tag, **self._fields(host)}
        return self._watch(self.connection.request({"op": "send", **fields}, host, what=what, finish=_nothing),
                           what, (dst,))

    def irecv(self, array, src=None, tag=0):
        if src is not None:
            src = check_peer(self, src, "recv", "src")
        tag = check_tag(self, tag, "recv")
        host, copy_back = host_staging(array, "recv")
        sender = "any rank" if src is None else f"rank {self.global_rank(src)}"
        what = f"recv of {describe(host.dtype, host.size)} from {sender} (tag {tag})"

        def finish(header, payload):
            protocol.copy_payload({**self._fields(host), "op": "recv"}, payload, host)
            if copy_back is not None:
                copy_back()
            source = header.get("src")
            return source if self.global_ranks is None else self.global_ranks.index(source)

        fields = {"group": self.group_key, "src": -1 if src is None else self.global_rank(src), "tag": tag,
                  "timeout": self.timeout, **self._fields(host)}
        return self._watch(self.connection.request({"op": "recv", **fields}, what=what, finish=finish), what,
                           peers_of(self, src))

    # -- subgroups (NOTE [ Subgroups ] in p2p.py) -----------------------------------------------------------------
    def _subgroup(self, ranks, key):
        members = numpy.array([self.global_rank(rank) for rank in ranks], dtype=numpy.int64)
        self.connection.request({"op": "new_group", "group": key}, members,
                                what=f"creating the group of ranks {members.tolist()}").wait()
        group = PSCommunicator.__new__(PSCommunicator)
        group.connection, group.liveness, group.timeout = self.connection, self.liveness, self.timeout
        group.connections, group.partition_bytes = (self.connection,), self.partition_bytes
        group.rank, group.size, group.local_rank, group.local_size = ranks.index(self.rank), len(ranks), self.local_rank, \
            self.local_size
        group.global_ranks, group.group_key, group.collectives = tuple(members.tolist()), key, 0
        return group

    def close(self):
        if self.__dict__.get("_closed"):  # idempotent, as Communicator.close promises
            return
        self._closed = True
        if self.global_ranks is not None:  # a subgroup: the server forgets it once every member has closed it
            if not self.connection.socket.closed:
                self.connection.request({"op": "free_group", "group": self.group_key}).wait()
            return
        for connection in self.connections[:0:-1]:  # server 0 last: it is the job's rendezvous
            connection.close()
        self.connection.close()


def _nothing(header, payload):
    """A request answered with nothing to return (a send's handle returns None)."""


def _into(piece):
    """A partition's `finish`: its answer copied into its slice of the array."""

    def finish(header, payload):
        protocol.copy_payload({"dtype": piece.dtype.name, "shape": [piece.size], "op": "allreduce"}, payload, piece)

    return finish


__all__ = ["DEFAULT_TIMEOUT", "PSCommunicator", "PSHandle", "ServerConnection"]
