"""What every communicator's point-to-point messages and subgroups share: the checks and the wording.

NOTE [ Point-to-point messages ]
- `isend(array, dst, tag)` / `irecv(array, src, tag)` (src None: any rank) match as MPI's do:
  by (source, tag) within one communicator, in the order they were posted. Messages on a
  subgroup never match messages on its parent or another group.
- The receiver's buffer must have the sender's dtype and number of elements (its shape may
  differ, as with torch's gloo): otherwise the receive fails with an error naming both ranks,
  both dtypes and both sizes (the contents of the receiver's buffer are then undefined).
- A send completes when its array may be reused, which may be before the receiver has it
  (mpi: MPI's eager protocol for small messages, the rendezvous protocol for large ones;
  ps: once the server holds it). Two ranks that both `send` before they `recv` may wait for
  each other with large messages, as under MPI and gloo: use isend/irecv.
- Every wait has the communicator's timeout and ends early, naming the rank, when the peer
  it waits for is lost (base.PeerWatch). A receive that timed out is cancelled.
- Tags are 0 .. comm.tag_limit - 1; tag_limit itself is distrain's own (the handshake of split).

NOTE [ Subgroups ]
`comm.split(ranks)` is called by every rank of `ranks` (ranks of `comm`; others may call it
and get None, at no cost) and returns a communicator numbering the members 0..n-1 in the
order of their rank in `comm`. Its members first meet (`agree_on_members`: a handshake with
a timeout, through the parent's point-to-point messages) and check that they asked for the
same group, so a rank that asked for another group is named instead of hanging in the
backend's own group creation, which has no timeout.
"""
from __future__ import annotations

import hashlib
import struct

import numpy

GROUP_KEY_BITS = 56  # a subgroup's id: a hash of its parent, its members and how many such groups came before
INTERNAL = "distrain's own tag"  # the tag of distrain's own messages (split's handshake): never a user's int


def unsupported(communicator, what):
    """The NotImplementedError text for a backend without `what`."""
    return (f"the {communicator.name!r} communicator has no {what}; use the 'mpi' or 'ps' backend "
            "(python -m distrain.launch --backend mpi|ps), which stage GPU arrays through host memory")


def check_peer(communicator, rank, what, name):
    """`rank` as an int, if it is another rank of `communicator` (ValueError naming it otherwise)."""
    if isinstance(rank, bool) or not isinstance(rank, (int, numpy.integer)) or not 0 <= rank < communicator.size:
        raise ValueError(f"{what}: {name}={rank!r} is not a rank of this communicator of {communicator.size} "
                         f"(ranks 0..{communicator.size - 1})")
    if rank == communicator.rank:
        raise ValueError(f"{what}: {name}={rank} is this rank itself; a message goes to another rank "
                         "(torch.distributed refuses it too)")
    return int(rank)


def peers_of(communicator, source):
    """The ranks a receive from `source` waits for: that one, or (None: any rank) every other."""
    if source is not None:
        return (source,)
    return tuple(rank for rank in range(communicator.size) if rank != communicator.rank)


def check_tag(communicator, tag, what):
    """`tag` as an int within 0..tag_limit-1; INTERNAL becomes tag_limit itself (distrain's own messages)."""
    limit = communicator.tag_limit
    if tag is INTERNAL:
        return limit
    if isinstance(tag, bool) or not isinstance(tag, (int, numpy.integer)) or not 0 <= tag < limit:
        raise ValueError(f"{what}: tag={tag!r} must be an integer in 0..{limit - 1} on the "
                         f"{communicator.name!r} backend")
    return int(tag)


def describe(dtype, count):
    """'float32 x 6' (a message's dtype and number of elements)."""
    return f"{numpy.dtype(dtype).name} x {count}"


def mismatch_text(receiver, sender, tag, mine, theirs):
    """The error of a receive whose buffer does not fit the message: names both ranks and both sides."""
    return (f"rank {receiver}: the message from rank {sender} (tag {tag}) holds {theirs}, but the receive buffer "
            f"holds {mine}; give recv a buffer of the sender's dtype and number of elements")


def split_ranks(communicator, ranks, what="split"):
    """`ranks` checked (distinct ranks of `communicator`) and sorted, as a tuple."""
    try:
        listed = [int(rank) for rank in ranks]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: ranks must be a list of integers, got {ranks!r}") from None
    bad = [rank for rank in listed if not 0 <= rank < communicator.size]
    if bad:
        raise ValueError(f"{what}: ranks {bad} are not ranks of this communicator of {communicator.size} "
                         f"(ranks 0..{communicator.size - 1})")
    if len(set(listed)) != len(listed) or not listed:
        raise ValueError(f"{what}: ranks must be distinct and not empty, got {listed}")
    return tuple(sorted(listed))


def group_key(parent_key, ranks, count):
    """A group's id, the same on every member without talking: its parent's id, its members (in the parent's
    numbering) and how many groups of those members this rank made from that parent before."""
    digest = hashlib.blake2b(struct.pack(f"<QQ{len(ranks)}Q", parent_key, count, *ranks), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - GROUP_KEY_BITS)


REFUSED = -1  # the first word of the leader's verdict when some member asked for another group


def agree_on_members(communicator, ranks, key):
    """NOTE [ Subgroups ]: the members of `ranks` meet through `communicator` and check they asked for group `key`.

    The lowest member collects every other member's token, then answers every member with
    the verdict: its own token when all of them match, else a refusal naming a member that
    asked for another group. Only then may a member go on to make the group, so that no
    member enters a backend's group creation (MPI's has no timeout) while another has
    already given up. Every wait has the communicator's timeout (a member that never comes
    is named).
    """
    token = numpy.array([len(ranks), key], dtype=numpy.int64)
    leader = ranks[0]
    what = f"creating the group of ranks {[communicator.global_rank(r) for r in ranks]}"
    if communicator.rank == leader:
        tokens = {rank: numpy.zeros(2, dtype=numpy.int64) for rank in ranks[1:]}
        receives = {rank: communicator.irecv(tokens[rank], rank, tag=INTERNAL) for rank in ranks[1:]}
        for rank in ranks[1:]:
            receives[rank].wait()
        others = [rank for rank in ranks[1:] if not numpy.array_equal(tokens[rank], token)]
        verdict = token if not others else numpy.array([REFUSED, others[0]], dtype=numpy.int64)
        sends = [communicator.isend(verdict, rank, tag=INTERNAL) for rank in ranks[1:]]
        for send in sends:
            send.wait()
    else:
        answer = numpy.zeros(2, dtype=numpy.int64)
        receive = communicator.irecv(answer, leader, tag=INTERNAL)
        communicator.isend(token, leader, tag=INTERNAL).wait()
        receive.wait()
        if numpy.array_equal(answer, token):
            others = []
        elif answer[0] == REFUSED and answer[1] != communicator.rank:
            others = [int(answer[1])]  # this member agrees with the leader, another does not
        else:
            others = [leader]
    if others:
        raise ValueError(f"rank {communicator.global_rank(communicator.rank)}: {what}: rank(s) "
                         f"{[communicator.global_rank(r) for r in others]} asked for a different group at the same "
                         "time; every member must create the same groups in the same order (torch.distributed: "
                         "every rank calls new_group with the same ranks, in the same order)")
