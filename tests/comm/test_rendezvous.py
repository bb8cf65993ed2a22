"""Ranks that find each other without a launcher (init_process_group with tcp:// or env://): distrain/rendezvous.py."""
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from distrain import rendezvous
from distrain.comm.ps import protocol

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "rendezvous_script.py")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISTRAIN_", "MASTER_", "PMI_", "OMPI_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(PYTHONPATH=REPO, OMP_NUM_THREADS="1", **extra)
    return env


def start_ranks(ranks, world, port, *extra, env=None):
    return [subprocess.Popen([sys.executable, SCRIPT, str(rank), str(world), str(port), *extra], env=env or environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            for rank in ranks]


def finish(processes, timeout=60):
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.communicate()
    return outputs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_started_by_hand_meet_and_compute_like_numpy(world, tmp_path):
    processes = start_ranks(range(world), world, free_port(), env=environment(DISTRAIN_USER_SECRET=str(tmp_path / "s")))
    outputs = finish(processes)
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, output
        assert f"rank {rank} ok, backend in the environment: ps" in output
        assert f"rank {rank} left, backend in the environment: None" in output  # the environment is put back


@pytest.mark.timeout(120)
def test_a_script_that_never_destroys_its_group_still_ends_promptly(tmp_path):
    """atexit leaves the group: rank 0 does not sit out its server's grace waiting for goodbyes that never come."""
    began = time.monotonic()
    processes = start_ranks(range(3), 3, free_port(), "atexit", env=environment(DISTRAIN_USER_SECRET=str(tmp_path / "s")))
    outputs = finish(processes)
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert time.monotonic() - began < 25  # the server's grace is 30 s: it ended because every rank said goodbye


@pytest.mark.timeout(120)
def test_a_rank_with_another_secret_is_not_admitted(tmp_path):
    port = free_port()
    ours = start_ranks([0], 2, port, "destroy", "3", env=environment(DISTRAIN_PS_SECRET="a" * 64))
    stranger = start_ranks([1], 2, port, "destroy", "3", env=environment(DISTRAIN_PS_SECRET="b" * 64))
    outputs = finish(ours + stranger)
    assert ours[0].returncode != 0 and stranger[0].returncode != 0
    assert "did not answer" in outputs[1] and "same secret?" in outputs[1], outputs[1]
    assert "rank(s) [1] never joined it" in outputs[0], outputs[0]


@pytest.mark.timeout(60)
def test_rank_0_says_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [output] = finish(start_ranks([0], 2, port, env=environment(DISTRAIN_USER_SECRET=str(tmp_path / "s"))))
    assert f"rank 0 cannot serve the rendezvous at tcp://127.0.0.1:{port}" in output, output
    assert "Address already in use" in output and "saying why above" in output, output  # the server's own words
    assert "pick another MASTER_PORT" in output, output


def test_the_user_secret_is_made_once_and_private(tmp_path):
    path = str(tmp_path / "config" / "distrain" / "rendezvous-secret")
    found = []
    racers = [threading.Thread(target=lambda: found.append(rendezvous._user_secret(path))) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert len(set(found)) == 1 and len(found[0]) == 64  # one secret, whoever made it
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert os.listdir(os.path.dirname(path)) == ["rendezvous-secret"]  # no drafts left behind
    os.chmod(path, 0o644)
    with pytest.raises(rendezvous.RendezvousError, match="readable by you alone .*mode 644.*chmod 600"):
        rendezvous._user_secret(path)


def test_a_given_secret_wins_over_the_user_file(tmp_path):
    env = {protocol.SECRET_ENVIRONMENT_VARIABLE: "c" * 40, rendezvous.USER_SECRET_ENVIRONMENT_VARIABLE: str(tmp_path / "s")}
    assert rendezvous.job_secret(env) == "c" * 40
    assert not os.path.exists(tmp_path / "s")


def test_plan_reads_torchrun_environment():
    env = {"MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29501", "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
           "LOCAL_WORLD_SIZE": "4"}
    plan = rendezvous.plan(None, -1, -1, env)
    assert (plan.address, plan.rank, plan.world_size, plan.local_rank, plan.local_world_size) == \
        ("tcp://10.1.2.3:29501", 5, 8, 1, 4)
    env["TORCHELASTIC_USE_AGENT_STORE"] = "True"  # torchrun's agent holds MASTER_PORT: the next port is ours
    assert rendezvous.plan(None, -1, -1, env).address == "tcp://10.1.2.3:29502"
    plan = rendezvous.plan("tcp://localhost:7000", 1, 2, {})
    assert (plan.address, plan.local_rank, plan.local_world_size) == ("tcp://localhost:7000", 1, 2)
    apart = rendezvous.plan("tcp://10.0.0.1:7000", 1, 2, {})  # beyond loopback: each rank on a machine of its own
    assert (apart.local_rank, apart.local_world_size) == (0, 1)
