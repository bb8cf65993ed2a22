"""The parameter server's requests for point-to-point messages and subgroups (a part of ParameterServer).

Messages wait in the server's mailboxes (mailbox.py: bounded, matched as MPI matches) until
their receivers ask; a subgroup (NOTE [ Subgroups ] in comm/p2p.py) is registered by its
members under the id they agreed on, and its collectives are matched among its members only.
`MessagesAndGroups` holds these handlers so that server.py keeps the collectives, the store
and the serving loop; it uses the server's `_reply`, `_check_pending`, `pending`, `groups`,
`mailboxes` and `world_size`.
"""
from __future__ import annotations

import time

from ..p2p import describe, mismatch_text
from . import protocol
from .mailbox import Message, Receiver
from .protocol import ProtocolError

MAX_GROUPS = 1024  # subgroups registered at once (the whole job's group is not counted)


class Group:
    """The ranks (of the whole job) whose collectives match each other: the whole job, or a subgroup."""

    def __init__(self, members):
        self.members = tuple(members)
        self.index = {rank: position for position, rank in enumerate(self.members)}  # rank -> its group rank
        self.holders = set(self.members)  # members that have not freed it (subgroups end with the last)

    def describe(self):
        return f"the group of ranks {list(self.members)}"



class MessagesAndGroups:
    """ParameterServer's handlers of send, recv, new_group and free_group (module docstring)."""

    def _on_send(self, header, payload, identity):
        src, dst = header["rank"], header["dst"]
        self._group_of(header, src, dst)
        protocol.payload_arrays(header, payload)  # its size must be its dtype and shape's
        self._check_pending(src)
        message = Message(header["group"], src, dst, header["tag"], header["dtype"], header["shape"], payload,
                          protocol.payload_size(payload))
        receiver = self.mailboxes.send(message)  # MailboxFullError (a ProtocolError) refuses it, keeping nothing
        if receiver is None:
            self.pending[src] += 1
        else:
            self.pending[dst] -= 1
            self._deliver(message, receiver)
        self._reply(identity, {"op": "send", "seq": header["seq"]})

    def _on_recv(self, header, payload, identity):
        dst, src = header["rank"], None if header["src"] == -1 else header["src"]
        self._group_of(header, dst, *(() if src is None else (src,)))
        self._check_pending(dst)
        now = time.monotonic()
        receiver = Receiver(header["group"], src, dst, header["tag"], header["dtype"], header["shape"], identity,
                            header["seq"], now, header["timeout"])
        message = self.mailboxes.receive(receiver)
        if message is None:
            self.pending[dst] += 1
        else:
            self.pending[message.src] -= 1
            self._deliver(message, receiver)

    def _deliver(self, message, receiver):
        """Answer `receiver` with `message`, or with why it does not fit its buffer (naming both ranks)."""
        mismatch = receiver.mismatch(message)
        if mismatch is None:
            self._reply(receiver.identity, {"op": "recv", "seq": receiver.seq, "src": message.src}, message.parts)
            return
        theirs, mine = mismatch
        self.refused += 1
        self._reply(receiver.identity, {"op": "recv", "seq": receiver.seq, "error": mismatch_text(
            receiver.dst, message.src, message.tag, describe(*mine), describe(*theirs))})

    def _on_new_group(self, header, payload, identity):
        rank, key = header["rank"], header["group"]
        size = protocol.payload_size(payload)
        if size % 8 or size > 8 * self.world_size:
            raise ProtocolError(f"rank {rank}: new_group {key}: {size} bytes are not a list of at most "
                                f"{self.world_size} int64 ranks")
        members = [int(r) for part in protocol.payload_arrays({"op": "new_group", "dtype": "int64",
                                                               "shape": [size // 8]}, payload) for r in part]
        if members != sorted(set(members)) or not members or not 0 <= members[0] <= members[-1] < self.world_size:
            raise ProtocolError(f"rank {rank}: new_group {key}: its members {members[:16]} are not distinct sorted "
                                f"ranks of 0..{self.world_size - 1}")
        if rank not in members:
            raise ProtocolError(f"rank {rank}: new_group {key} of ranks {members} does not hold the rank creating it")
        group = self.groups.get(key)
        if group is None:
            if key == 0 or len(self.groups) > MAX_GROUPS:
                raise ProtocolError(f"rank {rank}: this server already has {MAX_GROUPS} groups (destroy some) or "
                                    "the group id is the whole job's")
            group = self.groups[key] = Group(members)
        elif list(group.members) != members:
            raise ProtocolError(f"rank {rank}: new_group {key} of ranks {members}, but another member created it "
                                f"with ranks {list(group.members)}")
        group.holders.add(rank)
        self._reply(identity, {"op": "new_group", "seq": header["seq"]})

    def _on_free_group(self, header, payload, identity):
        group = self._group_of(header)
        if header["group"] != 0:
            group.holders.discard(header["rank"])
            if not group.holders:
                del self.groups[header["group"]]
                messages, receivers = self.mailboxes.forget_group(header["group"])  # nobody can take them now
                for message in messages:
                    self.pending[message.src] -= 1
                for receiver in receivers:
                    self.pending[receiver.dst] -= 1
                    self._reply(receiver.identity, {"op": "recv", "seq": receiver.seq, "error":
                                                    f"rank {receiver.dst}: its group was destroyed while it waited"})
        self._reply(identity, {"op": "free_group", "seq": header["seq"]})

    def _group_of(self, header, *ranks):
        """The header's Group, checked to hold `ranks` (default: the sender)."""
        group = self.groups.get(header["group"])
        if group is None:
            raise ProtocolError(f"rank {header['rank']}: {header['op']} in group {header['group']}, which no "
                                "member has created (or all have freed)")
        outside = [rank for rank in ranks or (header["rank"],) if rank not in group.index]
        if outside:
            raise ProtocolError(f"rank {header['rank']}: {header['op']} in {group.describe()}, which does not hold "
                                f"rank(s) {outside}")
        return group
