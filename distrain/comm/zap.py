"""Connection-level authentication for every ZeroMQ server distrain starts (ZAP, ZeroMQ's handshake check).

Why at the connection: ZeroMQ's MAXMSGSIZE limits each frame, not a whole multipart
message, and ZeroMQ hands an application a multipart message only once its last frame has
arrived. A peer that sends 1 MiB frames of one message that never ends therefore grows the
receiver without bound, and no check of the message itself (a MAC, a schema) ever gets to
run. A socket with a security mechanism takes no message at all from a peer whose
handshake has not passed: the handshake is checked by a ZAP handler (RFC 27: a thread
answering `inproc://zeromq.zap.01` on the socket's context) before ZeroMQ reads a single
message frame. Before that a stranger can make the server hold one handshake command per
connection, which ZeroMQ reads whole before checking it: at most the socket's MAXMSGSIZE,
so a guarded socket's frame limit must be small (the parameter server's is 1 MiB: its
payloads travel in frames of that size, ps/protocol.py).

The mechanism is PLAIN, with a password per connection: the client makes a random user
name and sends `HMAC-SHA256(secret, LABEL | user name)` as the password; the handler admits
a user name only with its password, and only from the address that first used it. So:

- The secret itself never crosses the wire, and the password cannot be turned back into it.
- On loopback (and ipc) the handshake is the whole authentication: only root can read or
  alter loopback traffic, and a connection that passed the handshake stays with the peer
  that passed it. Its messages need no MAC, which costs nothing per message (a MAC costs a
  SHA-256 pass over every payload at each end, about 0.6 ms per MB here).
- Beyond loopback PLAIN is only the door: whoever reads the network sees the password.
  Because the handler binds each user name to the address that first used it, a password
  read off the wire is spent for every other machine; only an attacker who can send from
  the rank's own address or stop the real handshake (a man in the middle, who can cut the
  job's connections anyway) gets past the door. The same address may come back: ZeroMQ
  reconnects by itself with the same credentials after a dropped connection (a network
  blip, an idle timeout), and refusing it would cut the rank off for good. Every message there still carries an HMAC made with the secret (ps/protocol.py),
  so what gets past the door can neither join, forge nor alter anything.

Why not CURVE (which encrypts and authenticates every message with keys derivable from
the secret): its encryption runs on ZeroMQ's single I/O thread at about 0.2 GB/s here,
against 0.7 to 1.1 GB/s for a plain or PLAIN connection and 0.6 GB/s for SHA-256 on the
ranks' own threads (the server hashes a result once for all ranks), so for gradient
traffic beyond loopback PLAIN plus a per-message HMAC is several times faster. What it
gives up is confidentiality: gradients cross the network readable, as they did before.

A refused handshake is answered with ZAP's 400 and ZeroMQ closes the connection; the
peer's ZeroMQ tries again every 100 ms, each try refused the same way (and counted).

    gate = zap.guard(server_socket, secret)       # before bind(); gate.stop() before context.term()
    zap.present_credentials(client_socket, secret)  # before connect()

The handler is pyzmq's ThreadAuthenticator (zmq.auth) with its PLAIN check replaced by
the one above. One handler serves one context, so every guarded socket gets its own context.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets

from zmq.auth.thread import ThreadAuthenticator

LABEL = b"distrain-zap-v1\0"  # the password is HMAC(secret, LABEL + user name): never the secret itself
DOMAIN = "distrain"


def connection_password(secret: bytes, username: bytes) -> bytes:
    """The password a holder of `secret` presents with `username` (hex text, within PLAIN's 255 bytes)."""
    return hmac.new(secret, LABEL + username, hashlib.sha256).hexdigest().encode()


def present_credentials(socket, secret: bytes):
    """Make `socket` (before connect) present a fresh user name and its password in its handshake."""
    username = secrets.token_hex(16).encode()
    socket.plain_username = username
    socket.plain_password = connection_password(secret, username)


class Gatekeeper(ThreadAuthenticator):
    """The ZAP handler of one context: admits a PLAIN handshake only with the secret's password for its
    user name, and each user name only from the address that first used it. `refused` and `admitted` count handshakes; `on_refused(address,
    reason)`, if given, is called (in the handler's thread) for every refused one."""

    def __init__(self, context, secret: bytes, on_refused=None):
        super().__init__(context, log=logging.getLogger("distrain.zap"))
        self.secret = bytes(secret)
        self.on_refused = on_refused
        self.used = {}  # user name -> the address it was admitted from: elsewhere a read password is spent
        self.admitted = 0
        self.refused = 0
        self._address = "an unknown peer"
        self.pid = os.getpid()

    def stop(self):
        """Stop the handler thread, only in the process that started it (also what __del__ calls): in a forked
        child (a data-loader worker) the thread does not exist and the stop would wait for it forever."""
        if os.getpid() == self.pid:
            super().stop()

    async def handle_zap_message(self, msg):
        self._address = msg[3].decode("ascii", "replace") if len(msg) > 3 else "an unknown peer"
        await super().handle_zap_message(msg)

    def _authenticate_plain(self, domain, username, password):
        """(admitted?, reason) for one PLAIN handshake (called by ThreadAuthenticator, in its thread)."""
        name = username.encode("utf-8", "replace")
        expected = connection_password(self.secret, name)
        if domain != DOMAIN:
            reason = b"not a distrain socket"
        elif not hmac.compare_digest(password.encode("utf-8", "replace"), expected):
            reason = b"wrong password (another job's secret, or none)"
        elif self.used.setdefault(name, self._address) != self._address:
            reason = b"user name already used from another address (a replayed handshake)"
        else:
            self.admitted += 1
            return True, b"OK"
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused(self._address, reason.decode())
        return False, reason


def guard(socket, secret: bytes, on_refused=None) -> Gatekeeper:
    """Start the ZAP handler on `socket`'s context and make `socket` (before bind) require its handshake.

    The returned Gatekeeper must be stopped (`stop()`) before the context is terminated.
    """
    gate = Gatekeeper(socket.context, secret, on_refused)
    gate.start()
    socket.zap_domain = DOMAIN.encode()
    socket.plain_server = True
    return gate
