"""Run under `python -m distrain.launch -n N --backend mpi|ps`: point-to-point, subgroups and async all_reduce.

Rank r's data is a known function of r, so every rank knows what each message and each
group collective must give (NumPy) and compares; it prints "rank R ok" when all agree.
`p2p_groups_script.py dead`: rank 1 leaves at once and rank 0's recv from it must fail naming it.
"""
import sys
import time

import numpy

import distrain
import distrain.distributed as dist


def data(rank, salt=0, count=6):
    return numpy.arange(count, dtype=numpy.float32) * (rank + 1) + salt + rank / 8


def expect_error(action, *words):
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        for word in words:
            assert word in str(error), (word, str(error))
        return str(error)
    raise AssertionError(f"no error for: {words}")


dist.init_process_group("gloo", timeout=20)
rank, size = dist.get_rank(), dist.get_world_size()
others = [r for r in range(size) if r != rank]

if sys.argv[1:] == ["dead"]:  # rank 1 ends at once; rank 0's receive from it must name it, well before the timeout
    if rank == 1:
        sys.exit(0)
    if rank == 0:
        started = time.monotonic()
        text = expect_error(lambda: dist.recv(distrain.zeros(3), src=1), "rank 1 (pid", "exited")
        assert time.monotonic() - started < 15, text
        print(f"rank 0 named the dead sender: {text}", flush=True)
    print(f"rank {rank} ok", flush=True)
    sys.exit(0)

# a chain of blocking send/recv around the ring: 0 -> 1 -> ... -> size-1 -> 0, each adding its rank
token = distrain.tensor(numpy.zeros(4, dtype=numpy.float64))
if rank == 0:
    dist.send(token, dst=1)
    assert dist.recv(token, src=size - 1) == size - 1
    numpy.testing.assert_array_equal(token.numpy(), [sum(range(size))] * 4)
else:
    assert dist.recv(token, src=rank - 1) == rank - 1
    token.numpy()[...] += rank
    dist.send(token, dst=(rank + 1) % size)

# isend/irecv to and from every rank at once, overlapping each other and some computing
received = {r: distrain.zeros(6) for r in others}
works = [dist.irecv(received[r], src=r, tag=10 + r) for r in others]
works += [dist.isend(distrain.tensor(data(rank, salt=100 * r)), dst=r, tag=10 + rank) for r in others]
busy = numpy.linalg.matrix_power(numpy.eye(32) * 0.5, 8).sum()  # work while the messages travel
for work in works:
    assert work.wait() is True and work.is_completed()
for r in others:
    numpy.testing.assert_array_equal(received[r].numpy(), data(r, salt=100 * rank))
    assert received[r]._version_counter[0] == 1  # written in place once, like an in-place op

# any-source: rank 0 hears from every other rank, in whatever order they come, and learns who sent what
if rank == 0:
    senders = []
    for _ in others:
        buffer = distrain.zeros(6)
        sender = dist.recv(buffer, tag=3)
        numpy.testing.assert_array_equal(buffer.numpy(), data(sender, salt=3))
        senders.append(sender)
    assert sorted(senders) == others, senders
else:
    dist.send(distrain.tensor(data(rank, salt=3)), dst=0, tag=3)

# tags pick the message: rank 1 receives rank 0's two messages in the other order; batch_isend_irecv
if rank == 0:
    dist.send(distrain.tensor(data(0, salt=1)), dst=1, tag=1)
    dist.send(distrain.tensor(data(0, salt=2)), dst=1, tag=2)
elif rank == 1:
    second, first = distrain.zeros(6), distrain.zeros(6)
    dist.recv(second, src=0, tag=2)
    dist.recv(first, src=0, tag=1)
    numpy.testing.assert_array_equal(second.numpy(), data(0, salt=2))
    numpy.testing.assert_array_equal(first.numpy(), data(0, salt=1))
right, left = (rank + 1) % size, (rank - 1) % size
from_left = distrain.zeros(6)
batch = dist.batch_isend_irecv([dist.P2POp(dist.isend, distrain.tensor(data(rank, salt=7)), right),
                                dist.P2POp(dist.irecv, from_left, left)])
for work in batch:
    work.wait()
numpy.testing.assert_array_equal(from_left.numpy(), data(left, salt=7))

# a receive buffer that does not fit the message: an error naming both ranks and both sides
if rank == 0:
    dist.send(distrain.tensor(data(0)), dst=1, tag=4)                      # float32 x 6
    dist.send(distrain.tensor(numpy.zeros(6, dtype=numpy.float64)), dst=1, tag=4)
elif rank == 1:
    expect_error(lambda: dist.recv(distrain.zeros(4), src=0, tag=4), "rank 1", "from rank 0", "float32 x 6",
                 "float32 x 4")
    expect_error(lambda: dist.recv(distrain.zeros(6), src=0, tag=4), "rank 1", "from rank 0", "float64 x 6",
                 "float32 x 6")
dist.barrier()

# bad arguments
expect_error(lambda: dist.send(distrain.zeros(2), dst=rank), "is this rank itself")
expect_error(lambda: dist.send(distrain.zeros(2), dst=size), f"dst={size} is not a rank of this world")
expect_error(lambda: dist.isend(distrain.zeros(2), dst=others[0], tag=-1), "tag=-1")
expect_error(lambda: dist.new_group([0, size]), "distinct ranks of this world")

# a receive nobody answers: an error within the (group's short) timeout, naming the rank it waited for
impatient = dist.new_group(timeout=2)
if rank == 0:
    started = time.monotonic()
    expect_error(lambda: dist.recv(distrain.zeros(3), src=1, group=impatient, tag=5), "rank 0", "from rank 1",
                 "did not complete within 2 s", "rank 1 did not post the matching message")
    assert time.monotonic() - started < 2 + 8, time.monotonic() - started
dist.barrier()

# async all_reduce: really in flight (rank 0 joins late), written back and version-bumped on completion
tensor = distrain.tensor(data(rank))
everyone = numpy.stack([data(r) for r in range(size)])
if rank == 0:
    time.sleep(1.5)
work = dist.all_reduce(tensor, async_op=True)
if rank != 0:
    assert not work.is_completed(), "an all_reduce completed before rank 0 joined it"
    assert tensor._version_counter[0] == 0
busy = numpy.linalg.matrix_power(numpy.eye(32) * 0.5, 8).sum()
future = work.get_future()
assert future.wait()[0] is tensor and work.is_completed()
assert tensor._version_counter[0] == 1
numpy.testing.assert_allclose(tensor.numpy(), everyone.sum(0), rtol=1e-6)
average = distrain.tensor(data(rank))
dist.all_reduce(average, op=dist.ReduceOp.AVG, async_op=True).wait()
numpy.testing.assert_allclose(average.numpy(), everyone.mean(0), rtol=1e-6)


# subgroups
def members_sum(ranks):
    total = numpy.zeros(6, dtype=numpy.float32)
    for r in ranks:  # group-rank order, as the group sums
        total += data(r)
    return total


assert dist.get_rank(dist.group.WORLD) == rank and dist.get_world_size(dist.GroupMember.WORLD) == size
if size >= 4:
    shapes = [[0, 2], [1, 3]]  # two groups at once, with different collectives
elif size == 3:
    shapes = [[1, 2], [0]]     # a group without rank 0, and a group of one
else:
    shapes = [[1], [0]]
made = [dist.new_group(ranks) for ranks in shapes]  # every rank creates every group, as in torch
mine = next(g for g in made if g != dist.GroupMember.NON_GROUP_MEMBER)
members = next(ranks for ranks in shapes if rank in ranks)
stranger = next(g for g in made if g == dist.GroupMember.NON_GROUP_MEMBER)
assert dist.get_rank(mine) == members.index(rank) and dist.get_world_size(mine) == len(members)
assert dist.get_process_group_ranks(mine) == members
assert dist.get_global_rank(mine, 0) == members[0] and dist.get_group_rank(mine, rank) == members.index(rank)
assert dist.get_rank(stranger) == -1 and dist.get_world_size(stranger) == -1
expect_error(lambda: dist.all_reduce(distrain.zeros(2), group=stranger), f"rank {rank} is not a member",
             "NON_GROUP_MEMBER")
if members == shapes[0]:
    tensor = distrain.tensor(data(rank))
    dist.all_reduce(tensor, group=mine)
    numpy.testing.assert_array_equal(tensor.numpy(), members_sum(members))
    expect_error(lambda: dist.broadcast(distrain.zeros(2), src=shapes[1][0], group=mine),
                 f"src={shapes[1][0]} is not a rank of this group")
else:
    tensor = distrain.tensor(data(rank))
    dist.broadcast(tensor, src=members[-1], group=mine)  # src: a rank of the job
    numpy.testing.assert_array_equal(tensor.numpy(), data(members[-1]))
    gathered = [distrain.zeros(6) for _ in members]
    dist.all_gather(gathered, distrain.tensor(data(rank)), group=mine)
    for r, out in zip(members, gathered):
        numpy.testing.assert_array_equal(out.numpy(), data(r))
    objects = [None] * len(members)
    dist.all_gather_object(objects, rank, group=mine)
    assert objects == members, objects
dist.barrier(group=mine)

if size >= 3:  # messages in a group: group ranks, and they never match the world's messages
    trio = dist.new_group(list(range(1, size)))
    if rank == 1:
        dist.send(distrain.tensor(data(1, salt=50)), dst=2, tag=0)                    # the world's
        dist.send(distrain.tensor(data(1, salt=60)), group=trio, group_dst=1, tag=0)  # trio's rank 1 = rank 2
    elif rank == 2:
        in_group, in_world = distrain.zeros(6), distrain.zeros(6)
        assert dist.recv(in_group, group=trio, tag=0) == 1  # any source in the group: reported as a job rank
        dist.recv(in_world, src=1, tag=0)
        numpy.testing.assert_array_equal(in_group.numpy(), data(1, salt=60))
        numpy.testing.assert_array_equal(in_world.numpy(), data(1, salt=50))
    if trio != dist.GroupMember.NON_GROUP_MEMBER:  # a group of a group (the communicators nest) and a sub-group
        pair = dist.new_group([1, 2])
        inner = trio.communicator.split([0, 1])
        if rank in (1, 2):
            array = data(rank)
            inner.allreduce(array)
            numpy.testing.assert_array_equal(array, members_sum([1, 2]))
            assert inner.global_ranks == (1, 2) and inner.rank == rank - 1
            tensor = distrain.tensor(data(rank))
            dist.reduce(tensor, dst=2, group=pair, op=dist.ReduceOp.MAX)
            numpy.testing.assert_array_equal(tensor.numpy(), data(2))
            inner.close()
            dist.destroy_process_group(pair)
            expect_error(lambda: dist.barrier(group=pair), "was destroyed")
    else:
        dist.new_group([1, 2])
dist.barrier()
print(f"rank {rank} ok", flush=True)
dist.destroy_process_group()
