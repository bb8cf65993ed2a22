"""The parameter server's wire format: msgpack headers, raw array payloads, optional HMAC.

Every message, in both directions, is three ZeroMQ frames::

    header   msgpack map: {"op": ..., "rank": ..., "seq": ..., "session": ..., "index": ..., "dtype": ..., ...}
    payload  the array's raw bytes (C order), or empty
    mac      HMAC-SHA256(secret, direction | len(header) | header | payload), or empty without a secret

Only the header is parsed (msgpack, never pickle), and it is checked against a fixed
schema before anything acts on it, so a malformed or hostile message is refused with a
`ProtocolError` instead of crashing the server. With a secret, a message whose MAC does
not verify is refused before its header is even decoded; the header carries the rank,
the server's session token and a per-rank message number ("seq", which must count up
by one), so a recorded message cannot be replayed into this or another session. Only
the first message, "hello", has no session: it only asks for the server's session token
(random per server) and claims nothing; a rank takes its place with "join", which carries
the token, so a join recorded in one session is refused in any other. A
collective also carries its "index", the count of collectives this rank has started:
the server matches the ranks' calls by index and checks that they agree.

Why HMAC rather than CURVE: it authenticates with one shared secret (the launcher hands it
to its ranks; a cluster script reads it from a file) and costs one SHA-256 pass per
message (about 1.4 GB/s per core), which is only paid when the server listens beyond
loopback (shared/DESIGN.md: servers bind to 127.0.0.1 unless told otherwise).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import struct
from urllib.parse import urlparse

import msgpack
import numpy

from ...errors import DistrainError

PROTOCOL_VERSION = 1
SECRET_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_SECRET"
ADDRESS_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_ADDRESS"

# what a client may ask, and the header fields each request must carry (beyond op, rank, seq, session)
REQUESTS = {
    "hello": {},
    "join": {"world_size": int, "timeout": float, "version": int},
    "allreduce": {"index": int, "dtype": str, "shape": list, "reduce": str},
    "broadcast": {"index": int, "dtype": str, "shape": list, "root": int},
    "allgather": {"index": int, "dtype": str, "shape": list},
    "barrier": {"index": int},
    "store_set": {"key": str},
    "store_get": {"key": str},
    "bye": {},
}
COLLECTIVES = frozenset(["allreduce", "broadcast", "allgather", "barrier"])
ALLOWED_DTYPES = frozenset(["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"])
MAX_KEY_LENGTH = 256
MAX_DIMENSIONS = 32


class ProtocolError(DistrainError, ValueError):
    """A message that is not a well-formed, authentic distrain parameter-server message."""


def load_secret(secret=None, environ=os.environ):
    """The shared secret as bytes: the argument, else $DISTRAIN_PS_SECRET, else None (no authentication)."""
    if secret is None:
        secret = environ.get(SECRET_ENVIRONMENT_VARIABLE) or None
    if secret is None:
        return None
    secret = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(secret) < 16:
        raise ValueError(f"the parameter-server secret must be at least 16 bytes (got {len(secret)}); "
                         "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'")
    return secret


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


def _mac(secret, header, payload, direction):
    digest = hmac.new(secret, direction + struct.pack("<Q", len(header)), hashlib.sha256)
    digest.update(header)
    digest.update(payload)
    return digest.digest()


def pack(header, payload=b"", secret=None, direction=REQUEST):
    """The three frames of a message (payload: bytes, or a C-contiguous array sent without a copy)."""
    encoded = msgpack.packb(header, use_bin_type=True)
    if isinstance(payload, numpy.ndarray):
        payload = payload.reshape(-1).view(numpy.uint8).data if payload.size else b""
    mac = _mac(secret, encoded, payload, direction) if secret is not None else b""
    return [encoded, payload, mac]


def unpack(frames, secret=None, direction=REQUEST):
    """(header dict, payload buffer) of a received message; ProtocolError if it is malformed or not authentic."""
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames (header, payload, mac), got {len(frames)}")
    header_bytes, payload, mac = (frame.buffer if hasattr(frame, "buffer") else frame for frame in frames)
    if secret is not None:
        if not hmac.compare_digest(bytes(mac), _mac(secret, bytes(header_bytes), payload, direction)):
            raise ProtocolError("message authentication failed (wrong or missing secret)")
    try:
        header = msgpack.unpackb(bytes(header_bytes), raw=False, strict_map_key=True,
                                 max_bin_len=64, max_array_len=MAX_DIMENSIONS * 8, max_map_len=32, max_str_len=4096)
    except Exception as error:  # msgpack raises several kinds for garbage
        raise ProtocolError(f"header is not valid msgpack: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a map, got {type(header).__name__}")
    return header, payload


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
    _check_fields(op, header, fields)
    if op == "join" and header["timeout"] <= 0:
        raise ProtocolError(f"join: timeout must be positive, got {header['timeout']}")
    if "root" in fields and not 0 <= header["root"] < world_size:
        raise ProtocolError(f"{op}: root rank {header['root']} is outside 0..{world_size - 1}")
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


def payload_array(header, payload):
    """The payload as an array of the header's dtype and shape; ProtocolError if the sizes disagree."""
    dtype = numpy.dtype(header["dtype"])
    shape = tuple(header["shape"])
    expected = math.prod(shape) * dtype.itemsize  # Python integers: a hostile shape cannot wrap around
    if len(payload) != expected:
        raise ProtocolError(f"{header['op']}: payload has {len(payload)} bytes, but {header['dtype']} {list(shape)} "
                            f"needs {expected}")
    try:
        return numpy.frombuffer(payload, dtype=dtype).reshape(shape) if expected else numpy.zeros(shape, dtype)
    except (ValueError, OverflowError) as error:  # an empty shape numpy cannot represent
        raise ProtocolError(f"{header['op']}: shape {list(shape)}: {error}") from None
