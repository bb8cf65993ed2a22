"""The parameter server's wire format: msgpack headers, raw array payloads, a MAC beyond loopback.

Every message, in both directions, is ZeroMQ frames::

    header   msgpack map: {"op": ..., "rank": ..., "seq": ..., "session": ..., "index": ..., "dtype": ..., ...}
    payload  the array's raw bytes (C order) in one or more frames of at most FRAME_BYTES (one empty frame: none)
    mac      HMAC-SHA256(secret, direction | len(header) | header | SHA-256(payload)), or empty on loopback

The payload is split so that no frame is larger than FRAME_BYTES (1 MiB), which the server
gives ZeroMQ as its frame limit: a stranger can make it hold at most one such frame per
connection, since ZeroMQ reads a handshake command whole before checking it (zap.py).
The parts are views of the array, never copies, and the server reduces them where they
lie.

Who may talk is settled before any message, by the connection's handshake (comm/zap.py):
the server admits only peers that hold the job's secret, loopback included (another local
user is a peer too), so a process without it can neither join, nor read the rendezvous
store, nor write anything, nor make the server buffer a message. On loopback that is
enough: no one but root can read or alter the traffic of a connection that passed it, so
messages carry no MAC (an empty frame) and cost nothing beyond their bytes. A server that
listens beyond loopback ("signed") also needs a MAC on every message, checked before the
header is even decoded, because whoever reads the network could get past the handshake's
door (zap.py says why it still cannot forge anything). The server says which it is in its
answer to hello, and that answer is always signed, so a rank knows it is talking to a
holder of the secret, and a man in the middle cannot switch the MACs off.

The messages a rank sends (REQUESTS below lists each one's header fields; every request gets
one answer, with the same "seq", or an "error"):

    hello, join, bye        take a place in the job (join names the world size, the protocol version,
                            the servers and the partition size) and leave it
    allreduce, broadcast,   synchronous collectives, matched across ranks by "index" within a "group",
    allgather, barrier      summed in rank order (server.py)
    new_group, free_group   subgroups (relay.py)
    send, recv              point-to-point messages held by the server (mailbox.py)
    store_set, store_get    the rendezvous key-value store
    serve, push             asynchronous mode: register with a shard of a model's parameters and pull
                            it; push a gradient and get fresh parameters back once the staleness bound
                            allows (NOTE [ Stale synchronous parallel ] in stale_synchronous.py)

Only the header is parsed (msgpack, never pickle), and it is checked against a fixed
schema before anything acts on it, so a malformed or hostile message is refused with a
`ProtocolError` instead of crashing the server. The header carries the rank, the
server's session token and a per-rank message number ("seq", which must count up by
one), so a recorded message cannot be replayed into this or another session. Only the
first message, "hello", has no session: it only asks for the server's session token
(random per server) and claims nothing; a rank takes its place with "join", which
carries the token, so a join recorded in one session is refused in any other. Answers
carry the token too: a rank drops an answer from any other session. A join also names
the job's servers and partition size (JOIN_LAYOUT, NOTE [ Partitions on several servers ]
in partitions.py), which every rank must share. A collective also
carries its "index", the count of collectives this rank has started: the server matches
the ranks' calls by index and checks that they agree.

Why HMAC rather than CURVE beyond loopback: see zap.py (CURVE runs at ~0.2 GB/s on
ZeroMQ's one I/O thread). The MAC covers the payload's SHA-256, not the payload itself, so
the server hashes the result of a collective once for all the ranks it answers.

Memory is bounded before a message is authenticated: no message is read from a peer
before its handshake has passed (zap.py), and ZeroMQ drops a peer that announces a frame
over FRAME_BYTES before buffering it. The largest payload a rank may send is
`max_message_bytes` (default 256 MiB, $DISTRAIN_PS_MAX_MESSAGE_MB): clients learn it from
the server's hello and refuse, before sending, a payload over it; the server refuses one too.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import struct
import tempfile
from urllib.parse import urlparse

import msgpack
import numpy

from ...errors import DistrainError

PROTOCOL_VERSION = 6  # 3: a ZAP handshake first; MACs only beyond loopback. 4: subgroups, send/recv. 5: join names
# the job's servers and partition size (several servers: partitions.py). 6: serve and push (asynchronous mode:
# stale_synchronous.py)
SECRET_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_SECRET"
SECRET_FILE_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_SECRET_FILE"
ADDRESS_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_ADDRESS"  # server 0 (the only one, or the first of DISTRAIN_PS_ADDRESSES)
ADDRESSES_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_ADDRESSES"  # every server of the job, comma-separated, server 0 first
PARTITION_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_PARTITION_MB"
MAX_MESSAGE_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_MAX_MESSAGE_MB"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 2 ** 20  # a 64M-parameter float32 model broadcast in one message
FRAME_BYTES = 2 ** 20  # the largest frame: a payload travels in parts of this size (a multiple of every itemsize)

# what a client may ask, and the header fields each request must carry (beyond op, rank, seq, session)
# "group" is 0 (or left out) for the whole job, else the id its members agreed on (p2p.group_key) and registered with new_group
# (its members, as int64 ranks, are the payload); a collective's "index" and "root" count within its group; a
# message's "src"/"dst" are ranks of the whole job ("src" -1: any rank) and match only within its group.
REQUESTS = {
    "hello": {},
    "join": {"world_size": int, "timeout": float, "version": int},  # + JOIN_LAYOUT, checked after the version
    "allreduce": {"group": int, "index": int, "dtype": str, "shape": list, "reduce": str},
    "broadcast": {"group": int, "index": int, "dtype": str, "shape": list, "root": int},
    "allgather": {"group": int, "index": int, "dtype": str, "shape": list},
    "barrier": {"group": int, "index": int},
    "send": {"group": int, "dst": int, "tag": int, "dtype": str, "shape": list},
    "recv": {"group": int, "src": int, "tag": int, "dtype": str, "shape": list, "timeout": float},
    "new_group": {"group": int},
    "free_group": {"group": int},
    # asynchronous mode (NOTE [ Stale synchronous parallel ] in stale_synchronous.py): "serve" registers a rank with
    # one shard of a model's parameters (rank 0's payload: the starting values) and is answered with the current
    # parameters; "push" carries a gradient and is answered with fresh parameters once the staleness bound allows.
    # "table" numbers a model's flat buffer, "shard" its slice, "model" names the parameters (a digest of their names,
    # shapes and dtypes: every rank's must agree); "groups" are the optimizer's hyperparameters per
    # param group, "runs" [start, stop, group] which elements of the shard belong to which group; "staleness" -1: inf
    "serve": {"table": int, "shard": int, "model": str, "dtype": str, "shape": list, "optimizer": str, "groups": list,
              "runs": list, "staleness": int, "damping": bool},
    "push": {"table": int, "shard": int, "clock": int, "dtype": str, "shape": list, "groups": list},
    "store_set": {"key": str},
    "store_get": {"key": str},
    "bye": {},
}
# what a join says of the job's layout, which every rank must have alike (partitions.py): checked after the version,
# so that an older rank is told to upgrade rather than that a field is missing
JOIN_LAYOUT = {"servers": list, "partition_bytes": int}
MAX_SERVERS = 256  # the longest server list a join may carry
COLLECTIVES = frozenset(["allreduce", "broadcast", "allgather", "barrier"])
ALLOWED_DTYPES = frozenset(["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"])
MAX_KEY_LENGTH = 256
MAX_TAG = 2 ** 31 - 1  # a message's tag: 0..MAX_TAG-1 the user's, MAX_TAG distrain's own (p2p.INTERNAL)
MAX_DIMENSIONS = 32


class ProtocolError(DistrainError, ValueError):
    """A message that is not a well-formed, authentic distrain parameter-server message.

    `kind` sorts refusals for the server's log: "bad MAC", "malformed" (before authentication),
    or "refused" (an authentic request the server cannot honour).
    """

    def __init__(self, message, kind="refused"):
        super().__init__(message)
        self.kind = kind


def _given_secret(secret, environ):
    """The argument, else $DISTRAIN_PS_SECRET, else the file named by $DISTRAIN_PS_SECRET_FILE, else None."""
    if secret is None:
        secret = environ.get(SECRET_ENVIRONMENT_VARIABLE) or None
    if secret is None and environ.get(SECRET_FILE_ENVIRONMENT_VARIABLE):
        secret = read_secret_file(environ[SECRET_FILE_ENVIRONMENT_VARIABLE])
    return secret


def load_secret(secret=None, environ=os.environ):
    """The shared secret as bytes: the argument, else $DISTRAIN_PS_SECRET, else the file named by
    $DISTRAIN_PS_SECRET_FILE, else None (for a server: make one; for a rank: an error)."""
    secret = _given_secret(secret, environ)
    if secret is None:
        return None
    secret = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(secret) < 16:
        raise ValueError(f"the parameter-server secret must be at least 16 bytes (got {len(secret)}); "
                         "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'")
    return secret


def new_secret():
    """A fresh random secret (256 bits, as hex text, so that it fits an environment variable or a file line)."""
    return secrets.token_hex(32)


def job_secret(secret=None, environ=os.environ, nodes=1):
    """The secret of a job the launcher starts: the one given (argument, $DISTRAIN_PS_SECRET or
    $DISTRAIN_PS_SECRET_FILE), else a fresh one (one machine: only this launcher's ranks need it).
    Several machines must share theirs, so there it must be given."""
    given = _given_secret(secret, environ)
    if given is not None:
        load_secret(given)  # long enough?
        return given if isinstance(given, str) else bytes(given).decode()
    if nodes > 1:
        raise ValueError(f"refusing to start a job of {nodes} machines without authentication: every machine's "
                         f"launcher needs the same secret. Set {SECRET_ENVIRONMENT_VARIABLE} or pass --secret-file "
                         "(a mode-600 file; launchers/ps_cluster.sh makes one)")
    return new_secret()


def write_secret_file(secret, directory=None):
    """Write `secret` to a new mode-600 file in a fresh private (mode-700) directory; returns its path.

    The directory is made under `directory`, else $XDG_RUNTIME_DIR (a per-user tmpfs, when the
    system has one), else the temporary directory.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if directory is None and runtime and os.path.isdir(runtime) and os.stat(runtime).st_uid == os.getuid():
        directory = runtime
    private = tempfile.mkdtemp(prefix="distrain-ps-", dir=directory)
    path = os.path.join(private, "secret")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return path


def max_message_bytes(limit=None, environ=os.environ):
    """The largest payload a server accepts: the argument, else $DISTRAIN_PS_MAX_MESSAGE_MB (MiB), else 256 MiB."""
    if limit is None and environ.get(MAX_MESSAGE_ENVIRONMENT_VARIABLE):
        try:
            limit = int(float(environ[MAX_MESSAGE_ENVIRONMENT_VARIABLE]) * 2 ** 20)
        except ValueError:
            raise ValueError(f"${MAX_MESSAGE_ENVIRONMENT_VARIABLE} must be a number of MiB, got "
                             f"{environ[MAX_MESSAGE_ENVIRONMENT_VARIABLE]!r}") from None
    limit = DEFAULT_MAX_MESSAGE_BYTES if limit is None else int(limit)
    if not 1 <= limit < 2 ** 62:
        raise ValueError(f"the parameter server's largest message must be a positive number of bytes, got {limit}")
    return limit


def read_secret_file(path):
    """A secret kept in a file (first line, whitespace stripped); refuses a file other users can read."""
    mode = os.stat(path).st_mode
    if mode & 0o077:
        raise PermissionError(f"secret file {path} is readable by other users (mode {oct(mode & 0o777)}); "
                              f"chmod 600 {path}")
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip()


def is_loopback(address):
    """True when a ZeroMQ address ("tcp://host:port", "ipc://...", "inproc://...") stays on this machine."""
    parsed = urlparse(address)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    host = parsed.hostname or ""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", a host name or an interface: reachable from elsewhere


REQUEST, REPLY = b"request", b"reply"  # the direction is part of every MAC: a request reflected back is no reply


def payload_bytes(payload):
    """The bytes a payload puts on the wire: bytes as they are, a C-contiguous array as a view (no copy)."""
    if isinstance(payload, numpy.ndarray):
        return payload.reshape(-1).view(numpy.uint8).data if payload.size else b""
    return payload


def payload_parts(payload):
    """The frames a payload travels in: views of at most FRAME_BYTES each (at least one, maybe empty).

    A list or tuple is taken as parts already (a server handing on the frames it received).
    """
    if isinstance(payload, (list, tuple)):
        return list(payload) or [b""]
    view = memoryview(payload_bytes(payload)).cast("B")
    return [view[start:start + FRAME_BYTES] for start in range(0, len(view), FRAME_BYTES)] or [b""]


def payload_size(parts):
    return sum(memoryview(part).nbytes for part in parts)


def payload_digest(payload):
    """SHA-256 of a payload (what its MAC covers): compute it once to sign one payload to several ranks."""
    digest = hashlib.sha256()
    for part in payload_parts(payload):
        digest.update(part)
    return digest.digest()


def _mac(secret, header, digest, direction):
    return hmac.new(secret, direction + struct.pack("<Q", len(header)) + header + digest, hashlib.sha256).digest()


def pack(header, payload=b"", secret=None, direction=REQUEST, digest=None, signed=True):
    """The frames of a message: header, the payload's parts (no copies), mac.

    `payload`: bytes, a C-contiguous array, or a list of parts. `signed`: with a MAC made
    with `secret`; unsigned (loopback, where the handshake is the authentication) the mac
    frame is empty and nothing is hashed. `digest`, if given, is payload_digest(payload),
    computed once by a caller sending it to several ranks.
    """
    encoded = msgpack.packb(header, use_bin_type=True)
    parts = payload_parts(payload)
    if not signed:
        return [encoded, *parts, b""]
    if secret is None:
        raise ValueError("a signed parameter-server message needs the job's secret")
    mac = _mac(secret, encoded, payload_digest(parts) if digest is None else digest, direction)
    return [encoded, *parts, mac]


def unpack(frames, secret=None, direction=REQUEST, signed=True):
    """(header dict, payload parts) of a received message; ProtocolError if it is malformed or not authentic.

    `signed`: its MAC must verify with `secret` (checked before the header is decoded); unsigned, the
    mac frame is ignored (the connection's handshake authenticated the peer).
    """
    if len(frames) < 3:
        raise ProtocolError(f"expected at least 3 frames (header, payload, mac), got {len(frames)}",
                            kind="malformed")
    header_bytes, *parts, mac = (frame.buffer if hasattr(frame, "buffer") else frame for frame in frames)
    if signed:
        if secret is None:
            raise ValueError("checking a signed parameter-server message needs the job's secret")
        if not hmac.compare_digest(bytes(mac), _mac(secret, bytes(header_bytes), payload_digest(parts),
                                                    direction)):
            raise ProtocolError("message authentication failed (wrong or missing secret)", kind="bad MAC")
    try:
        header = msgpack.unpackb(bytes(header_bytes), raw=False, strict_map_key=True,
                                 max_bin_len=64, max_array_len=MAX_DIMENSIONS * 8, max_map_len=32, max_str_len=4096)
    except Exception as error:  # msgpack raises several kinds for garbage
        raise ProtocolError(f"header is not valid msgpack: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a map, got {type(header).__name__}")
    return header, parts


def _check_fields(op, header, fields):
    for name, kind in fields.items():
        value = header.get(name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = header[name] = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise ProtocolError(f"{op}: field {name!r} must be {kind.__name__}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ProtocolError(f"{op}: field {name!r} must be finite, got {value!r}")


def check_envelope(header, world_size):
    """The fields that say who sent a request and its number (op, rank, seq, session); returns the op.

    Checked before the sender's message number is counted, the rest (check_request) after,
    so that a refused request still uses up its number, as its sender counted it.
    """
    op = header.get("op")
    if not isinstance(op, str) or op not in REQUESTS:
        raise ProtocolError(f"unknown op {op!r}; expected one of {sorted(REQUESTS)}")
    _check_fields(op, header, {"rank": int, "seq": int} if op == "hello" else
                  {"rank": int, "seq": int, "session": bytes})
    if not 0 <= header["rank"] < world_size:
        raise ProtocolError(f"{op}: rank {header['rank']} is outside 0..{world_size - 1}")
    return op


def check_request(header, world_size):
    """Validate a request header against its op's schema (before the server acts on any field)."""
    op = check_envelope(header, world_size)
    fields = REQUESTS[op]
    if "group" in fields:
        header.setdefault("group", 0)  # left out: the whole job
    _check_fields(op, header, fields)
    if "timeout" in fields and header["timeout"] <= 0:
        raise ProtocolError(f"{op}: timeout must be positive, got {header['timeout']}")
    for name, lowest in (("root", 0), ("dst", 0), ("src", -1)):
        if name in fields and not lowest <= header[name] < world_size:
            raise ProtocolError(f"{op}: {name} rank {header[name]} is outside {lowest}..{world_size - 1}")
    if "tag" in fields and not 0 <= header["tag"] <= MAX_TAG:
        raise ProtocolError(f"{op}: tag {header['tag']} is outside 0..{MAX_TAG}")
    if "group" in fields and not 0 <= header["group"] < 2 ** 63:
        raise ProtocolError(f"{op}: group id {header['group']} is outside 0..2**63-1")
    if "dtype" in fields:
        if header["dtype"] not in ALLOWED_DTYPES:
            raise ProtocolError(f"{op}: dtype {header['dtype']!r} not one of {sorted(ALLOWED_DTYPES)}")
        shape = header["shape"]
        if len(shape) > MAX_DIMENSIONS or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                   for n in shape):
            raise ProtocolError(f"{op}: shape {shape!r} is not a list of non-negative integers")
    if "key" in fields and not 0 < len(header["key"]) <= MAX_KEY_LENGTH:
        raise ProtocolError(f"{op}: key must be 1..{MAX_KEY_LENGTH} characters")
    if op == "allreduce" and header["reduce"] not in ("sum", "max", "min"):
        raise ProtocolError(f"allreduce: reduce {header['reduce']!r} not one of sum, max, min")
    return op


def check_join_layout(header):
    """The job's layout a join names (JOIN_LAYOUT): (server addresses as a tuple, partition size in bytes)."""
    _check_fields("join", header, JOIN_LAYOUT)
    servers, partition = header["servers"], header["partition_bytes"]
    if not 1 <= len(servers) <= MAX_SERVERS or not all(
            isinstance(address, str) and 0 < len(address) <= MAX_KEY_LENGTH for address in servers):
        raise ProtocolError(f"join: servers must be 1..{MAX_SERVERS} addresses of 1..{MAX_KEY_LENGTH} characters, "
                            f"got {servers!r:.200}")
    if partition < 1:
        raise ProtocolError(f"join: partition_bytes must be positive, got {partition}")
    return tuple(servers), partition


def payload_arrays(header, parts):
    """The payload's parts as flat arrays of the header's dtype (views, no copy); ProtocolError if their
    sizes do not add up to the header's shape or a part splits an element."""
    dtype = numpy.dtype(header["dtype"])
    shape = tuple(header["shape"])
    expected = math.prod(shape) * dtype.itemsize  # Python integers: a hostile shape cannot wrap around
    size = payload_size(parts)
    if size != expected:
        raise ProtocolError(f"{header['op']}: payload has {size} bytes, but {header['dtype']} {list(shape)} "
                            f"needs {expected}")
    if any(memoryview(part).nbytes % dtype.itemsize for part in parts):
        raise ProtocolError(f"{header['op']}: a payload frame splits a {header['dtype']} element")
    return [numpy.frombuffer(part, dtype=dtype) for part in parts if memoryview(part).nbytes]


def copy_payload(header, parts, out):
    """Copy the payload's parts into `out` (a C-contiguous array of the header's dtype and shape)."""
    flat, offset = out.reshape(-1), 0
    for part in payload_arrays(header, parts):
        flat[offset:offset + part.size] = part
        offset += part.size
