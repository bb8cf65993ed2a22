"""A parameter server's checkpoint in asynchronous mode (distrain/comm/ps/server_checkpoint.py), in-process.

The oracles: the shard that never stopped (a restored shard fed the same requests must give the
same answers, bit for bit: its optimizer state, clocks and version really carried over; a K = 0
round in progress at the checkpoint completes as it would have), and a local distrain Adam
stepped on the same gradients (through a real ParameterServer that checkpoints, is closed, and is
started again from its file). Also when the file is written (every N updates, never a partial
file at the path, at close); that a restarted server answers no rank before the others of its
checkpoint are back, for its heartbeat timeout at most; and the checkpoints a server must refuse
to start from, naming the file, in-process and on its command line (exit code 2).
"""
import errno
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import distrain
from distrain.comm.ps import server_checkpoint
from distrain.comm.ps.client import PSCommunicator
from distrain.comm.ps.server import ParameterServer

from .test_ps import REPO, isolated, wait_until  # noqa: F401 (isolated: the autouse fixture)
from .test_ps_async_shard import SIZE, Job, Oracle, adam, gradient, sgd, values

KEY = (0, 0)


def answers_of(job):
    """The answers since the last call, as comparable values: (rank, header, the payload's bytes)."""
    return [(rank, header, payload) for rank, header, payload, _ in job.take()]


def restored_job(job, path):
    """A Job around the shard that server_checkpoint.load gives back from `path`, its ranks' counters where `job`'s
    are (the ranks go on where they were; only the server restarted)."""
    twin = Job(job.world_size, optimizer=job.description["optimizer"], groups=job.groups,
               staleness=job.description["staleness"])
    shards = server_checkpoint.load(path, job.world_size, twin.reply)
    assert list(shards) == [KEY]
    twin.shard = shards[KEY]
    twin.seq, twin.clock = job.seq.copy(), job.clock.copy()
    return twin


def by_rank(answers):
    return sorted(answers, key=lambda answer: answer[0])


def optimizer_state_bytes(shard):
    """Every array of the shard's optimizer state, as bytes, by (parameter index, name)."""
    found = {}
    for index, state in shard.optimizer.state_dict()["state"].items():
        for name, value in state.items():
            found[(index, name)] = np.asarray(getattr(value, "_data", value)).tobytes()
    return found


# pushes (by rank) before the checkpoint and after it. K = 2: the ranks' clocks differ at the checkpoint
# ({0: 3, 1: 2, 2: 1}), and every push stays within the bound (answered at once).
PUSHES = {0: ([2, 0, 1, 1, 2, 0, 0, 1, 2], [1, 2, 0, 0, 1, 2, 2, 0, 1]),
          2: ([0, 0, 1, 2, 0, 1], [2, 2, 1, 0, 2, 1, 0, 1, 2])}
OPTIMIZERS = {"SGD momentum": ("SGD", sgd(0.1, 0.9)), "Adam": ("Adam", adam(0.01))}


@pytest.mark.parametrize("staleness", [0, 2], ids=["K=0", "K=2"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_a_restored_shard_answers_the_same_requests_with_the_same_bits_as_the_shard_that_never_stopped(
        tmp_path, staleness, optimizer):
    name, groups = OPTIMIZERS[optimizer]
    world, path = 3, tmp_path / "server.ckpt"
    job = Job(world, optimizer=name, groups=groups, staleness=staleness)
    job.start(values(0))
    before, after = PUSHES[staleness]
    for rank in before:
        job.push(rank, gradient(rank, job.clock[rank]))
    assert len(job.take()) == len(before)  # every push answered: no request in flight at the checkpoint
    if staleness:
        assert dict(job.shard.clock) == {0: 3, 1: 2, 2: 1}
    server_checkpoint.save(path, {KEY: job.shard}, world)
    twin = restored_job(job, path)
    assert twin.shard.version == job.shard.version == len(before) // (world if staleness == 0 else 1)
    # the restarted server's ranks register again (rank 0 with its own values, which must not replace the
    # checkpoint's), slowest first and then the others; to the shard that never stopped, the same requests are pulls
    for rank in [2, 0, 1]:
        assert twin.answers == []  # none answered before every rank of the checkpoint is back
        for shard_job in (job, twin):
            shard_job.serve(rank, values(99) if rank == 0 else None)
    assert by_rank(answers_of(twin)) == by_rank(answers_of(job))
    for rank in after:
        g = gradient(rank, job.clock[rank])
        job.push(rank, g)
        twin.push(rank, g)
        assert answers_of(twin) == answers_of(job), (rank, job.clock[rank])
    assert twin.shard.values.tobytes() == job.shard.values.tobytes()
    assert (twin.shard.version, twin.shard.clock, twin.shard.staleness_counts) == \
        (job.shard.version, job.shard.clock, job.shard.staleness_counts)
    assert optimizer_state_bytes(twin.shard) == optimizer_state_bytes(job.shard) != {}


def without_seq(answers):
    return [(rank, {name: value for name, value in header.items() if name != "seq"}, payload)
            for rank, header, payload in answers]


def test_a_k0_checkpoint_taken_mid_round_counts_none_of_the_rounds_pushes_which_the_ranks_push_again(tmp_path):
    world, path = 3, tmp_path / "server.ckpt"
    job = Job(world, optimizer="Adam", groups=adam(0.01), staleness=0)
    job.start(values(3))
    for rank in [1, 0, 2, 2, 1, 0]:
        job.push(rank, gradient(rank, job.clock[rank]))
    job.take()
    first = gradient(0, 2)
    job.push(0, first)  # the third round has begun: rank 0's gradient waits for the others'
    server_checkpoint.save(path, {KEY: job.shard}, world)
    twin = restored_job(job, path)
    for rank in range(world):
        twin.serve(rank)
    registered = by_rank(answers_of(twin))
    assert [(rank, header["version"], header["clock"]) for rank, header, _ in registered] == \
        [(0, 2, 2), (1, 2, 2), (2, 2, 2)]  # two rounds in the checkpoint, and two pushes of each rank
    twin.clock[0] = 2  # as a reconnecting rank, from its registration's answer: it pushes its third gradient again
    twin.push(0, first)
    for rank in (2, 1):
        g = gradient(rank, 2)
        job.push(rank, g)
        twin.push(rank, g)
    assert without_seq(answers_of(twin)) == without_seq(answers_of(job))  # the round the server never finished
    assert twin.shard.values.tobytes() == job.shard.values.tobytes() and twin.shard.clock == job.shard.clock


# -- a ParameterServer that checkpoints ---------------------------------------------------------------------

ADAM = adam(0.01)


def serve_header():
    return {"op": "serve", "table": 0, "shard": 0, "model": "digest", "dtype": "float32", "shape": [SIZE],
            "optimizer": "Adam", "groups": ADAM, "runs": [[0, SIZE, 0]], "staleness": 0, "damping": False}


def push_header(clock):
    return {"op": "push", "table": 0, "shard": 0, "clock": clock, "dtype": "float32", "shape": [SIZE],
            "groups": ADAM}


def answer(connection, header, payload=b""):
    answered, parts = connection.request(header, payload).wait()
    return answered, np.frombuffer(b"".join(parts), np.float32)


def saved_version(path):
    """The version of the one shard in the checkpoint at `path`, None when there is no file."""
    return distrain.load(str(path))["shards"][0]["version"] if os.path.exists(path) else None


def wait_for_the_save_due_at(updates, due, saves):
    """The server saves after it answers, at its loop's next turn, by when the next push may have come in too: after
    the pushes that make a save due, the test waits for it (`due`: updates -> how many saves by then)."""
    if updates in due:
        wait_until(lambda: len(saves) >= due[updates], what=f"the checkpoint due at {updates} updates")


@pytest.mark.timeout(30)
def test_a_server_checkpoints_every_n_updates_atomically_and_at_close_and_a_new_one_resumes_from_it(
        tmp_path, monkeypatch, caplog):
    path, every, start = tmp_path / "server.ckpt", 3, values(1)
    oracle = Oracle(distrain.optim.Adam, start, [[0, SIZE, 0]], ADAM)  # one rank, K = 0: a local Adam's bits
    saves, held_while_writing, fail_write = [], [], [False]
    real_save, real_fsync = server_checkpoint.save, os.fsync

    def save(where, shards, world_size):  # when the server saves: the total of its versions
        saves.append(sum(shard.version for shard in shards.values()))
        real_save(where, shards, world_size)

    def fsync(descriptor):  # a checkpoint's bytes are all written: what does the path hold meanwhile?
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            held_while_writing.append(saved_version(path))
            if fail_write[0]:
                fail_write[0] = False
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(server_checkpoint, "save", save)
    monkeypatch.setattr(os, "fsync", fsync)
    server = ParameterServer(1, checkpoint=str(path), checkpoint_every=every).start()
    address = server.address
    try:
        comm = PSCommunicator(address, 0, 1, timeout=5)
        try:
            header, got = answer(comm.connection, serve_header(), start)
            assert header["version"] == 0 and got.tobytes() == start.tobytes()
            for step in range(8):
                if step == 5:
                    fail_write[0] = True  # the write at 6 updates fails (a full disk): logged, tried again at 7
                g = gradient(0, step)
                oracle.step(g)
                header, got = answer(comm.connection, push_header(step), g)
                assert header["version"] == step + 1 and got.tobytes() == oracle.values().tobytes()
                wait_for_the_save_due_at(step + 1, {3: 2, 6: 3, 7: 4}, saves)
        finally:
            comm.close()
    finally:
        server.close()
    # once the optimizer is described (0 updates: a server that dies early keeps the clocks and the optimizer), then
    # every 3 updates, not before; the failed one again at the next update; close()
    assert saves == [0, 3, 6, 7, 8]
    assert held_while_writing == [None, 0, 3, 3, 7]  # the previous checkpoint, whole, while the next is written
    assert "could not write its checkpoint" in caplog.text and "No space left on device" in caplog.text
    assert saved_version(path) == 8
    assert [name for name in os.listdir(tmp_path)] == ["server.ckpt"]  # no temporary left behind, not even the failed

    monkeypatch.setattr(os, "fsync", real_fsync)
    resumed = ParameterServer(1, bind=address, checkpoint=str(path), checkpoint_every=every).start()
    try:
        comm = PSCommunicator(address, 0, 1, timeout=5)
        try:
            header, got = answer(comm.connection, serve_header(), values(99))  # rank 0's values: not taken
            assert (header["version"], header["clock"]) == (8, 8) and got.tobytes() == oracle.values().tobytes()
            for step in range(8, 12):
                g = gradient(0, step)
                oracle.step(g)
                header, got = answer(comm.connection, push_header(step), g)
                assert header["version"] == step + 1 and got.tobytes() == oracle.values().tobytes()
                wait_for_the_save_due_at(step + 1, {11: 6}, saves)
        finally:
            comm.close()
    finally:
        resumed.close()
    assert saves[5:] == [11, 12] and saved_version(path) == 12


def a_checkpoint(path, world_size=2):
    """A checkpoint of a job of `world_size` ranks, K = 1, after rank 1's first push; the shard's description."""
    job = Job(world_size, groups=sgd(0.1, 0.9), staleness=1)
    job.start(values(2))
    job.push(1, gradient(1, 0))
    server_checkpoint.save(path, {KEY: job.shard}, world_size)
    return job.description


@pytest.mark.timeout(30)
def test_a_restarted_server_waits_for_the_ranks_of_its_checkpoint_and_goes_on_without_one_that_stays_away(
        tmp_path, caplog):
    path = tmp_path / "server.ckpt"
    description = a_checkpoint(path)
    server = ParameterServer(2, checkpoint=str(path), heartbeat_timeout=1.0).start()
    try:
        comm = PSCommunicator(server.address, 0, 2, timeout=10)
        try:
            asked = time.monotonic()
            header, got = answer(comm.connection, {"op": "serve", **description})  # rank 1 never comes back
            waited = time.monotonic() - asked
        finally:
            comm.close()
    finally:
        server.close()
    assert 0.5 < waited < 5, waited  # held until the server's heartbeat timeout (1 s) after its start, then answered
    assert (header["version"], header["clock"]) == (1, 0)
    assert "rank(s) [1] did not register again with served shard 0 of model 0 within 1 s of its restart" in \
        caplog.text, caplog.text


# -- checkpoints a server must refuse -------------------------------------------------------------------------

def flip_bytes_in_the_middle(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle - 8:middle + 8] = bytes(byte ^ 0xFF for byte in data[middle - 8:middle + 8])
    path.write_bytes(bytes(data))


def without_values(path):
    saved = distrain.load(str(path))
    del saved["shards"][0]["values"]
    distrain.save(saved, str(path))


BAD_CHECKPOINTS = {
    # what the file holds -> what the error must say (the file's name is checked apart)
    "another world size": (lambda path: a_checkpoint(path, world_size=3),
                           "is the checkpoint of a job of 3 ranks, this server serves 2"),
    "flipped bytes": (lambda path: (a_checkpoint(path), flip_bytes_in_the_middle(path)), "checksum"),
    "truncated": (lambda path: (a_checkpoint(path), path.write_bytes(path.read_bytes()[:-100])), "is truncated"),
    "text": (lambda path: path.write_text("server = 'tcp://127.0.0.1:5555'\n"), "is not a distrain checkpoint"),
    "a trainer's checkpoint": (lambda path: distrain.save({"model": {"weight": distrain.ones(3)}, "step": 4},
                                                          str(path)),
                               "is not a distrain parameter-server checkpoint"),
    "a shard without values": (lambda path: (a_checkpoint(path), without_values(path)),
                               "is not a distrain parameter-server checkpoint"),
}


@pytest.mark.parametrize("content", list(BAD_CHECKPOINTS))
def test_a_server_refuses_to_start_from_a_bad_checkpoint_naming_the_file(tmp_path, content):
    write, message = BAD_CHECKPOINTS[content]
    path = tmp_path / "server.ckpt"
    write(path)
    before = path.read_bytes()
    with pytest.raises(ValueError) as refused:
        ParameterServer(2, checkpoint=str(path))
    assert str(path) in str(refused.value) and message in str(refused.value)
    assert path.read_bytes() == before  # left as it was, for the user to look at


@pytest.mark.timeout(60)
def test_the_server_command_exits_2_naming_a_bad_checkpoint(tmp_path):
    """One run per kind of refusal (a damaged file, another job's, not a checkpoint), each a process of its own."""
    paths = []
    for content in ("flipped bytes", "another world size", "text"):
        path = tmp_path / f"{content.replace(' ', '-')}.ckpt"
        BAD_CHECKPOINTS[content][0](path)
        paths.append((path, BAD_CHECKPOINTS[content][1]))
    processes = [subprocess.Popen([sys.executable, "-m", "distrain.comm.ps.server", "--world-size", "2",
                                   "--bind", "tcp://127.0.0.1:0", "--checkpoint", str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                  env=dict(os.environ, PYTHONPATH=REPO))
                 for path, _ in paths]
    try:
        results = [process.communicate(timeout=45) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    for process, (path, message), (stdout, stderr) in zip(processes, paths, results):
        assert process.returncode == 2 and stdout == "", (path, stdout, stderr)
        assert stderr.startswith("distrain parameter server: ") and str(path) in stderr and message in stderr, stderr
        assert "Traceback" not in stderr, stderr


def test_a_job_started_again_from_a_checkpoint_every_rank_had_left_answers_no_rank_before_all_are_back(tmp_path):
    """Every rank said bye before the checkpoint (a finished job): started again with the same checkpoint, the first
    rank back must not train alone (K=0 rounds of its gradient only, divided by 1) before the others register."""
    job = Job(2, optimizer="SGD", groups=sgd(0.1), staleness=0)
    job.start(values(0))
    for step in range(2):
        for rank in (0, 1):
            job.push(rank, gradient(rank, step))
    job.take()
    for rank in (0, 1):
        job.shard.drop(rank)  # what a bye does
    path = tmp_path / "server.ckpt"
    server_checkpoint.save(path, {KEY: job.shard}, 2)
    twin = restored_job(job, path)
    twin.serve(0)
    assert twin.take() == []  # held: rank 1 of the checkpoint is not back
    twin.serve(1)
    answered = by_rank(answers_of(twin))
    assert [(rank, header["clock"], header["version"]) for rank, header, _ in answered] == [(0, 2, 2), (1, 2, 2)]
    twin.push(0, gradient(0, 2), clock=2)
    assert twin.take() == []  # K=0: the round waits for rank 1's gradient, as before the restart
