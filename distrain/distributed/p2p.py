"""torch.distributed's point-to-point messages on Tensors (and arrays): send, recv, isend, irecv, batch_isend_irecv.

    if dist.get_rank() == 0:
        dist.send(tensor, dst=1)
    else:
        sender = dist.recv(tensor)               # from any rank; returns who sent it

Each call is the communicator's own message (NOTE [ Point-to-point messages ] in
comm/p2p.py): the receive buffer must have the sender's dtype and number of elements, else
the receive fails naming both ranks; every wait has the job's timeout and names the rank
it waits for. `dst`/`src` are ranks of the whole job, `group_dst`/`group_src` ranks within
`group`; a message on a group matches only messages on that group. `send` returns once the
tensor may be changed again, which can be before the receiver has it.
"""
from __future__ import annotations

from ..collectives import Work, _array, _communicator, _group_rank


def isend(tensor, dst=None, group=None, tag=0, group_dst=None) -> Work:
    """Start sending `tensor` to rank `dst`; don't change it before the Work's wait()."""
    comm = _communicator(group, "isend")
    return Work(comm.isend(_array(tensor, "isend"), _group_rank(group, dst, group_dst, "isend", "dst"), tag))


def irecv(tensor, src=None, group=None, tag=0, group_src=None) -> Work:
    """Start receiving into `tensor` from rank `src` (None: any rank); it is written at the Work's completion."""
    from .groups import resolve

    comm = _communicator(group, "irecv")
    peer = None if src is None and group_src is None else _group_rank(group, src, group_src, "irecv", "src")
    ranks = resolve(group, "irecv").ranks
    return Work(comm.irecv(_array(tensor, "irecv"), peer, tag), (tensor,), source=ranks.__getitem__)


def send(tensor, dst=None, group=None, tag=0, group_dst=None):
    """Send `tensor` to rank `dst`; returns once `tensor` may be changed again."""
    isend(tensor, dst, group, tag, group_dst).wait()


def recv(tensor, src=None, group=None, tag=0, group_src=None) -> int:
    """Fill `tensor` with a message from rank `src` (None: any rank); returns the sender's rank in the job."""
    return irecv(tensor, src, group, tag, group_src)._source_rank()


class P2POp:
    """One isend or irecv for batch_isend_irecv (torch.distributed.P2POp)."""

    def __init__(self, op, tensor, peer=None, group=None, tag=0, group_peer=None):
        if op not in (isend, irecv):
            raise ValueError(f"P2POp: op must be distrain.distributed.isend or irecv, got {op!r}")
        self.op, self.tensor, self.peer, self.group, self.tag, self.group_peer = op, tensor, peer, group, tag, group_peer


def batch_isend_irecv(p2p_op_list):
    """Start every P2POp of the list (all non-blocking, so their order cannot deadlock); their Works, in order."""
    if not p2p_op_list or not all(isinstance(op, P2POp) for op in p2p_op_list):
        raise ValueError("batch_isend_irecv: expected a non-empty list of P2POp")
    return [op.op(op.tensor, op.peer, op.group, op.tag, op.group_peer) for op in p2p_op_list]


__all__ = ["P2POp", "batch_isend_irecv", "irecv", "isend", "recv", "send"]
