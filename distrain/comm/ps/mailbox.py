"""The parameter server's relay of point-to-point messages: mailboxes, bounded, matched as MPI matches.

A rank's `send` is a request carrying the array; the server keeps it until the receiver's
`recv` asks for it (or hands it on at once if that recv is already waiting), then answers
the receiver with the sender's frames as they came (never joined or copied). The sender's
request is answered as soon as the server holds the message: its array may then be reused
(NOTE [ Point-to-point messages ] in comm/p2p.py).

Matching: a receive takes the earliest message (in arrival order) of its group for its rank
with its tag from its source (or any source); a message goes to the earliest-posted
receive that wants it. Messages from one sender with one tag therefore arrive in the
order they were sent.

Bounds (shared/DESIGN.md: memory is bounded): the messages of one sender that wait for
their receivers hold at most `max_bytes` (MailboxFullError beyond it: the sender is
refused, the server keeps nothing of it), at most MAILBOX_MESSAGES wait per
(group, sender, receiver, tag), and each waiting message or receive counts against its
rank's limit of pending requests (server.MAX_PENDING_PER_RANK, checked by the server).
"""
from __future__ import annotations

import collections
import math

from .protocol import ProtocolError

MAILBOX_MESSAGES = 256  # messages waiting per (group, sender, receiver, tag)


class Message:
    """A sent array waiting for its receiver: who, which tag, what (dtype, shape), and its frames."""

    def __init__(self, group, src, dst, tag, dtype, shape, parts, nbytes):
        self.group, self.src, self.dst, self.tag = group, src, dst, tag
        self.dtype, self.shape, self.parts, self.nbytes = dtype, shape, parts, nbytes


class Receiver:
    """A posted receive waiting for its message; `src` None: from any rank; answered at `identity`/`seq`;
    given up `timeout` seconds after `posted` (monotonic time)."""

    def __init__(self, group, src, dst, tag, dtype, shape, identity, seq, posted, timeout):
        self.group, self.src, self.dst, self.tag = group, src, dst, tag
        self.dtype, self.shape, self.identity, self.seq = dtype, shape, identity, seq
        self.posted, self.timeout, self.deadline = posted, timeout, posted + timeout

    def wants(self, message):
        return message.tag == self.tag and self.src in (None, message.src)

    def mismatch(self, message):
        """None if the message fits this receive's buffer (same dtype and element count), else (theirs, mine)."""
        if message.dtype == self.dtype and math.prod(message.shape) == math.prod(self.shape):
            return None
        return (message.dtype, math.prod(message.shape)), (self.dtype, math.prod(self.shape))


class MailboxFullError(ProtocolError):
    """A sender has as many messages or bytes waiting for their receivers as the server keeps for it."""


class Mailboxes:
    """Every waiting message and receive of one server (see the module docstring)."""

    def __init__(self, max_bytes):
        self.max_bytes = int(max_bytes)
        self.messages = collections.defaultdict(list)  # (group, dst) -> Messages, in arrival order
        self.receivers = collections.defaultdict(list)  # (group, dst) -> Receivers, in posting order
        self.counts = collections.Counter()  # (group, src, dst, tag) -> messages waiting
        self.bytes = collections.Counter()  # src -> bytes of its messages waiting

    def send(self, message):
        """The Receiver that takes `message` now (removed from the waiting ones), or None if it must wait (kept).

        MailboxFullError, keeping nothing, if the sender's waiting messages are at their bound.
        """
        box = (message.group, message.dst)
        for position, receiver in enumerate(self.receivers.get(box, ())):
            if receiver.wants(message):
                del self.receivers[box][position]
                self._tidy(self.receivers, box)
                return receiver
        key = (message.group, message.src, message.dst, message.tag)
        if self.counts[key] >= MAILBOX_MESSAGES:
            raise MailboxFullError(f"rank {message.src} already has {self.counts[key]} messages with tag "
                                   f"{message.tag} waiting for rank {message.dst} to receive them (at most "
                                   f"{MAILBOX_MESSAGES}): rank {message.dst} is far behind or never receives them")
        if self.bytes[message.src] + message.nbytes > self.max_bytes:
            raise MailboxFullError(f"rank {message.src} already has {self.bytes[message.src]} bytes of messages "
                                   f"waiting for their receivers; {message.nbytes} more would pass this server's "
                                   f"bound of {self.max_bytes} bytes per sender: post the matching recv before "
                                   "sending more, or send less at once")
        self.messages[box].append(message)
        self.counts[key] += 1
        self.bytes[message.src] += message.nbytes
        return None

    def receive(self, receiver):
        """The Message `receiver` takes now (removed), or None if it must wait (kept, in posting order)."""
        box = (receiver.group, receiver.dst)
        for position, message in enumerate(self.messages.get(box, ())):
            if receiver.wants(message):
                del self.messages[box][position]
                self._tidy(self.messages, box)
                key = (message.group, message.src, message.dst, message.tag)
                self.counts[key] -= 1
                self.bytes[message.src] -= message.nbytes
                for counter, counted in ((self.counts, key), (self.bytes, message.src)):
                    if not counter[counted]:
                        del counter[counted]
                return message
        self.receivers[box].append(receiver)
        return None

    def expired(self, now):
        """The receives whose deadline has passed (removed)."""
        late = []
        for box in list(self.receivers):
            late += [receiver for receiver in self.receivers[box] if now > receiver.deadline]
            self.receivers[box] = [receiver for receiver in self.receivers[box] if now <= receiver.deadline]
            self._tidy(self.receivers, box)
        return late

    def forget_group(self, group):
        """Drop every waiting message and receive of `group` (destroyed by all its members); returns them."""
        messages = [m for box in list(self.messages) if box[0] == group for m in self.messages.pop(box)]
        receivers = [r for box in list(self.receivers) if box[0] == group for r in self.receivers.pop(box)]
        for message in messages:
            self.counts.pop((message.group, message.src, message.dst, message.tag), None)
            self.bytes[message.src] -= message.nbytes
            if not self.bytes[message.src]:
                del self.bytes[message.src]
        return messages, receivers

    @staticmethod
    def _tidy(table, box):
        if not table[box]:
            del table[box]
