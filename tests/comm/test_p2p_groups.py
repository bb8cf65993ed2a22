"""torch.distributed's point-to-point messages, subgroups and async all_reduce (distrain.distributed) on 2, 3 and 4
ranks, mpi and ps, against NumPy (p2p_groups_script.py); a dead sender named; the parameter server's mailbox bounds."""
import os
import sys

import numpy as np
import pytest

from distrain.comm.base import CommunicatorError
from distrain.comm.ps import mailbox, protocol
from distrain.comm.ps.client import PSCommunicator
from distrain.comm.ps.server import ParameterServer
from tests.process_group import run_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "p2p_groups_script.py")
SECRET = "a-test-secret-for-mailboxes-0123456"


def launch(backend, ranks, *args):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return run_group([sys.executable, "-m", "distrain.launch", "-n", str(ranks), "--backend", backend, SCRIPT, *args],
                     150, merge_output=True, env=env)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_messages_groups_and_async_all_reduce_match_numpy(backend, ranks):
    result = launch(backend, ranks)
    assert result.returncode == 0, result.stdout
    for rank in range(ranks):
        assert f"rank {rank} ok" in result.stdout, result.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
def test_a_receive_from_a_rank_that_left_fails_naming_it(backend):
    result = launch(backend, 3, "dead")
    assert "rank 0 named the dead sender" in result.stdout, result.stdout
    assert "rank 0 ok" in result.stdout and "rank 2 ok" in result.stdout, result.stdout


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(protocol.SECRET_ENVIRONMENT_VARIABLE, SECRET)
    started = ParameterServer(2, max_message_bytes=64 * 1024, max_mailbox_bytes=200 * 1024).start()
    yield started
    started.close()


@pytest.mark.timeout(60)
def test_a_rank_flooding_sends_is_refused_and_the_server_keeps_at_most_its_bound(server):
    sender = PSCommunicator(server.address, 0, 2, timeout=10.0)
    try:
        kept = [sender.isend(np.full(16 * 1024, float(i), dtype=np.float32), 1) for i in range(3)]  # 3 x 64 KiB
        for handle in kept:
            handle.wait()  # held by the server for rank 1, which has not even joined
        with pytest.raises(CommunicatorError, match="rank 0 already has 196608 bytes of messages waiting for their "
                                                    "receivers; 65536 more would pass this server's bound of 204800"):
            sender.send(np.zeros(16 * 1024, dtype=np.float32), 1)
        assert server.mailboxes.bytes[0] == 3 * 64 * 1024 <= server.mailboxes.max_bytes
        receiver = PSCommunicator(server.address, 1, 2, timeout=10.0)
        try:
            for i in range(3):  # the refused message was never kept; the others come in the order they were sent
                buffer = np.zeros(16 * 1024, dtype=np.float32)
                assert receiver.recv(buffer, 0) == 0
                assert (buffer == i).all()
        finally:
            receiver.close()
        assert server.mailboxes.bytes == {} and server.mailboxes.messages == {} and server.pending[0] == 0
        assert server._thread.is_alive()
    finally:
        sender.close()


@pytest.mark.timeout(60)
def test_a_flood_of_small_messages_is_bounded_per_mailbox(server, monkeypatch):
    monkeypatch.setattr(mailbox, "MAILBOX_MESSAGES", 5)
    sender = PSCommunicator(server.address, 0, 2, timeout=10.0)
    try:
        for i in range(5):
            sender.send(np.array([i], dtype=np.int64), 1, tag=7)
        with pytest.raises(CommunicatorError, match="rank 0 already has 5 messages with tag 7 waiting for rank 1"):
            sender.send(np.array([5], dtype=np.int64), 1, tag=7)
        sender.send(np.array([9], dtype=np.int64), 1, tag=8)  # another mailbox still takes messages
        assert server.mailboxes.counts[(0, 0, 1, 7)] == 5 and server.pending[0] == 6
    finally:
        sender.close()


@pytest.mark.timeout(60)
def test_a_message_to_a_group_it_is_not_in_is_refused(server):
    sender = PSCommunicator(server.address, 0, 2, timeout=10.0)
    try:
        header = {"op": "send", "group": 12345, "dst": 1, "tag": 0, "dtype": "int64", "shape": [1]}
        with pytest.raises(CommunicatorError, match="group 12345, which no member has created"):
            sender.connection.request(header, np.zeros(1, dtype=np.int64)).wait()
        members = np.array([1], dtype=np.int64)
        with pytest.raises(CommunicatorError, match="does not hold the rank creating it"):
            sender.connection.request({"op": "new_group", "group": 77}, members).wait()
    finally:
        sender.close()


def test_nccl_says_which_backends_have_messages_and_groups():
    from distrain.comm.nccl import NCCLCommunicator

    nccl = NCCLCommunicator.__new__(NCCLCommunicator)  # no GPU needed: the methods refuse before touching one
    for call in (lambda: nccl.isend(np.zeros(2), 1), lambda: nccl.irecv(np.zeros(2), 1), lambda: nccl.split([0])):
        with pytest.raises(NotImplementedError, match="the 'nccl' communicator has no .*use the 'mpi' or 'ps'"):
            call()


def test_a_world_of_one_has_no_one_to_message_and_one_group():
    from distrain.comm.local import LocalCommunicator

    local = LocalCommunicator()
    with pytest.raises(ValueError, match="dst=0 is this rank itself"):
        local.send(np.zeros(2), 0)
    with pytest.raises(ValueError, match="no other rank to receive from"):
        local.recv(np.zeros(2))
    alone = local.split([0])
    array = np.arange(3.0)
    alone.allreduce(array)
    assert array.tolist() == [0.0, 1.0, 2.0] and (alone.rank, alone.size) == (0, 1)
    with pytest.raises(ValueError, match=r"ranks \[1\] are not ranks of this communicator of 1"):
        local.split([0, 1])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["mpi", "ps"])
def test_ranks_asking_for_different_groups_all_get_the_error(backend):
    """The member that agrees with the leader hears the refusal too, instead of entering the group's creation."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mismatched_group_script.py")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    result = run_group([sys.executable, "-m", "distrain.launch", "-n", "3", "--backend", backend, script], 90,
                       merge_output=True, env=env)
    assert result.returncode == 0, result.stdout
    assert "made the group" not in result.stdout, result.stdout
    assert "rank 0 refused" in result.stdout and "rank(s) [1] asked for a different group" in result.stdout
    assert "rank 1 refused" in result.stdout and "rank(s) [0] asked for a different group" in result.stdout
    assert "rank 2 refused" in result.stdout, result.stdout


def test_a_destroyed_groups_waiting_messages_no_longer_count_against_their_senders():
    boxes = mailbox.Mailboxes(max_bytes=1000)
    for group, tag in ((5, 0), (5, 1), (0, 0)):
        boxes.send(mailbox.Message(group, 0, 1, tag, "float32", [100], [], 400 if group == 5 else 100))
    boxes.receive(mailbox.Receiver(5, 1, 0, 3, "float32", [1], b"x", 1, 0.0, 10.0))
    with pytest.raises(mailbox.MailboxFullError, match="rank 0 already has 900 bytes"):
        boxes.send(mailbox.Message(0, 0, 1, 0, "float32", [100], [], 400))
    messages, receivers = boxes.forget_group(5)
    assert sorted(m.tag for m in messages) == [0, 1] and [r.tag for r in receivers] == [3]
    assert boxes.bytes[0] == 100 and set(boxes.counts) == {(0, 0, 1, 0)} and list(boxes.messages) == [(0, 1)]
    assert not boxes.receivers
    assert boxes.send(mailbox.Message(0, 0, 1, 0, "float32", [100], [], 400)) is None  # room again
