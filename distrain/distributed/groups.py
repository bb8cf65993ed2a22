"""torch.distributed's process groups: `new_group`, `group.WORLD`, `GroupMember` and the rank translations.

    evens = dist.new_group([0, 2])                   # every rank calls it, as in torch
    if dist.get_rank() in (0, 2):
        dist.all_reduce(tensor, group=evens)         # ranks 0 and 2 only

A ProcessGroup is a communicator over its members (Communicator.split: the backend's own
subgroup, NOTE [ Subgroups ] in comm/p2p.py) and their ranks in the whole job. As in torch,
`src`/`dst` arguments are ranks of the whole job, and `group_src`/`group_dst` ranks within
the group (members numbered in increasing order of their rank in the job). A rank not in
the group gets GroupMember.NON_GROUP_MEMBER; a collective given it raises, naming the group.
"""
from __future__ import annotations


class ProcessGroup:
    """Some ranks of the job and this rank's communicator among them (torch.distributed.ProcessGroup's role)."""

    def __init__(self, ranks, communicator):
        self._ranks = tuple(ranks)
        self._communicator = communicator

    @property
    def ranks(self):
        """The members, by their rank in the whole job, in group-rank order."""
        return self._ranks

    @property
    def communicator(self):
        if self._communicator is None:
            raise RuntimeError(f"distrain.distributed: {self!r} was destroyed (destroy_process_group); create it "
                               "again with new_group")
        return self._communicator

    def rank(self):
        return self.communicator.rank

    def size(self):
        return len(self.ranks)

    def __repr__(self):
        return f"<ProcessGroup of ranks {list(self.ranks)}>"


class _WorldGroup(ProcessGroup):
    """group.WORLD: the whole job, whatever communicator init_process_group made."""

    def __init__(self):
        super().__init__((), None)

    @property
    def communicator(self):
        from . import get_communicator

        return get_communicator()

    @property
    def ranks(self):
        return tuple(range(self.communicator.size))

    def __repr__(self):
        return "<ProcessGroup WORLD>"


class _NonMember:
    """What new_group gives a rank that is not in the group; every such value equals NON_GROUP_MEMBER."""

    def __init__(self, ranks=None):
        self.ranks = ranks

    def __eq__(self, other):
        return isinstance(other, _NonMember)

    def __hash__(self):
        return hash(_NonMember)

    def __repr__(self):
        return "GroupMember.NON_GROUP_MEMBER" + ("" if self.ranks is None else f" (of ranks {list(self.ranks)})")


WORLD = _WorldGroup()
NON_GROUP_MEMBER = _NonMember()


class GroupMember:
    """torch's names: GroupMember.WORLD, GroupMember.NON_GROUP_MEMBER."""

    WORLD = WORLD
    NON_GROUP_MEMBER = NON_GROUP_MEMBER


class group:  # torch.distributed.group's name
    """torch's `dist.group.WORLD`."""

    WORLD = WORLD


_groups = []  # the groups this process created and has not destroyed


def new_group(ranks=None, timeout=None, backend=None, pg_options=None, use_local_synchronization=False,
              group_desc=None, device_id=None, sort_ranks=True):
    """A group of `ranks` (ranks of the whole job; None: all), called by every rank of the job as in torch.

    Members get a ProcessGroup numbering them in increasing rank order; the others get
    GroupMember.NON_GROUP_MEMBER. The members meet (with the timeout) and check that they
    asked for the same group. timeout: seconds or a timedelta, for this group's waits on this
    rank (on the ps backend the server's time limit for a collective stays the job's).
    backend: None, "gloo" or the job's own backend: one job uses one communicator kind.
    pg_options, group_desc, device_id and use_local_synchronization are accepted and have
    no effect (only the members talk either way); sort_ranks=False is refused.
    """
    from . import get_backend, get_communicator

    world = get_communicator()
    if backend is not None and str(backend).lower() not in ("gloo", "cpu:gloo,cuda:nccl", get_backend()):
        raise ValueError(f"new_group(backend={backend!r}): this job's process group runs on {get_backend()!r}; a "
                         "group uses the same backend (leave backend=None)")
    if not sort_ranks:
        raise ValueError("new_group(sort_ranks=False) is not supported: group ranks follow the job's rank order")
    members = tuple(range(world.size)) if ranks is None else tuple(sorted(_checked_ranks(ranks, world.size)))
    communicator = world.split(members)
    if communicator is None:
        return _NonMember(members)
    if timeout is not None:
        communicator.timeout = float(getattr(timeout, "total_seconds", lambda: timeout)())
    made = ProcessGroup(members, communicator)
    _groups.append(made)
    return made


def _checked_ranks(ranks, size):
    listed = list(ranks)
    if not all(isinstance(rank, int) and not isinstance(rank, bool) for rank in listed):
        raise ValueError(f"new_group: ranks must be integers, got {listed!r}")
    outside = [rank for rank in listed if not 0 <= rank < size]
    if outside or len(set(listed)) != len(listed) or not listed:
        raise ValueError(f"new_group: ranks {listed} must be distinct ranks of this world of {size} "
                         f"(0..{size - 1}), at least one")
    return listed


def resolve(group, what):
    """The ProcessGroup a collective's `group=` names (None: the whole job); an error for a rank not in it."""
    if group is None or group is WORLD:
        return WORLD
    if isinstance(group, _NonMember):
        from . import get_rank

        ranks = "" if group.ranks is None else f" of ranks {list(group.ranks)}"
        raise ValueError(  # noqa: TRY004 - a value every non-member gets: this rank is the problem, not the type
            f"distrain.distributed.{what}: rank {get_rank()} is not a member of the group{ranks} it "
                         "was given (new_group returned GroupMember.NON_GROUP_MEMBER here); call the group's "
                         "collectives only on its members")
    if not isinstance(group, ProcessGroup):
        raise TypeError(f"distrain.distributed.{what}: group must be a ProcessGroup from new_group (or None), got "
                        f"{type(group).__name__}")
    return group


def get_group_rank(group, global_rank):
    """`global_rank`'s rank within `group`."""
    group = resolve(group, "get_group_rank")
    if global_rank not in group.ranks:
        raise ValueError(f"get_group_rank: rank {global_rank} is not in {group!r}")
    return group.ranks.index(global_rank)


def get_global_rank(group, group_rank):
    """The whole job's rank of `group`'s rank `group_rank`."""
    group = resolve(group, "get_global_rank")
    if not isinstance(group_rank, int) or not 0 <= group_rank < len(group.ranks):
        raise ValueError(f"get_global_rank: group rank {group_rank!r} is not in {group!r} (group ranks "
                         f"0..{len(group.ranks) - 1})")
    return group.ranks[group_rank]


def get_process_group_ranks(group):
    """The whole job's ranks of `group`'s members, in group-rank order."""
    return list(resolve(group, "get_process_group_ranks").ranks)


def rank_in(group):
    """get_rank(group): this rank's number in `group`, -1 if not a member (as torch)."""
    return -1 if isinstance(group, _NonMember) else resolve(group, "get_rank").rank()


def size_of(group):
    """get_world_size(group): `group`'s size, -1 on a rank not in it (as torch)."""
    return -1 if isinstance(group, _NonMember) else resolve(group, "get_world_size").size()


def destroy(group):
    """destroy_process_group(group): release this rank's part of `group` (a non-member has nothing to release)."""
    if isinstance(group, _NonMember):
        return
    group = resolve(group, "destroy_process_group")
    if group is WORLD:
        raise ValueError("destroy_process_group(group.WORLD): call destroy_process_group() to leave the job")
    if group in _groups:
        _groups.remove(group)
    communicator, group._communicator = group._communicator, None
    if communicator is not None:
        communicator.close()


def destroy_all():
    """Release every group this process created (before the job's own communicator closes)."""
    for made in _groups[:]:  # destroy() removes each
        try:
            destroy(made)
        except Exception:  # noqa: BLE001 - leaving the job must go on; a peer may be gone already
            made._communicator = None
    _groups.clear()


__all__ = ["WORLD", "GroupMember", "ProcessGroup", "destroy", "destroy_all", "get_global_rank", "get_group_rank",
           "get_process_group_ranks", "group", "new_group", "rank_in", "resolve", "size_of"]
