"""A parameter-server process that dies in asynchronous mode: restarted from its checkpoint, or not at all.

Real processes (NOTE [ A server that restarts ] in distrain/comm/ps/served_model.py): a
`python -m distrain.comm.ps.server --checkpoint` killed with SIGKILL while its ranks
(ps_async_restart_script.py) train, and started again on the same port: the ranks connect
again and finish, each going on from its own clock in the checkpoint (the updates since it
are lost and redone; a push it had counted already is not applied twice), which the
restarted server's last checkpoint agrees with. A server that stays dead fails its rank
within seconds, with an error naming its address. Every process runs in a session of its
own and is killed on failure.
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import distrain
from distrain import nn
from distrain.comm.base import CommunicatorError
from distrain.comm.ps import served_model
from distrain.comm.ps.client import PSCommunicator
from distrain.parallel import DistributedDataParallel

from .test_ps import REPO, finish, isolated, wait_until  # noqa: F401 (isolated: the autouse fixture)
from .test_ps_async import kill

SCRIPT = os.path.join(os.path.dirname(__file__), "ps_async_restart_script.py")
ENVIRONMENT = dict(PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def server_process(bind, checkpoint, every, world_size=2):
    """A server process (its session's leader) and the address it printed; its log goes to a file beside the
    checkpoint."""
    with open(f"{checkpoint}.log", "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "distrain.comm.ps.server", "--world-size", str(world_size),
                                    "--bind", bind, "--checkpoint", str(checkpoint), "--checkpoint-every", str(every),
                                    "--quiet"], stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                                   env=dict(os.environ, **ENVIRONMENT))
    return process, process.stdout.readline().strip()


def rank_process(rank, world_size, **variables):
    return subprocess.Popen([sys.executable, SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            env=dict(os.environ, **ENVIRONMENT, RANK=str(rank), WORLD_SIZE=str(world_size),
                                     **{name: str(value) for name, value in variables.items()}))



class Lines:
    """A process's output lines, read as they come (the test waits for some before it acts)."""

    def __init__(self, process):
        self.process, self.lines = process, []

    def wait_for(self, line, timeout=30.0):
        deadline = time.monotonic() + timeout
        while line not in self.lines:
            assert time.monotonic() < deadline, f"no line {line!r} within {timeout} s: {self.lines}"
            read = self.process.stdout.readline()
            assert read, f"the process ended before {line!r}: {self.lines}"
            self.lines.append(read.rstrip("\n"))

    def rest(self, timeout):
        output, _ = self.process.communicate(timeout=timeout)
        return self.lines + output.splitlines()


def saved_clocks(path):
    (state,) = distrain.load(str(path))["shards"]
    return {rank: clock for rank, clock in state["clock"]}, state["version"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("every", [10, 17], ids=["updates lost", "the held push in the checkpoint"])
def test_a_killed_server_restarted_from_its_checkpoint_lets_the_ranks_finish_from_their_own_clocks(tmp_path, every):
    """K = 2, two ranks: rank 1 pauses after 7 steps, so rank 0's 10th push is held (10 - 7 > 2) when the server is
    killed, with 17 updates applied. Its one checkpoint holds 10 or so of them (every 10 updates: the ranks' later
    pushes are lost, and pushed again), or all 17 (every 17: rank 0's held push is in it, not to be applied again)."""
    checkpoint, go, steps = tmp_path / "server.ckpt", tmp_path / "go", 14
    server, address = server_process("tcp://127.0.0.1:0", checkpoint, every=every)
    processes = [server]
    try:
        common = dict(ASYNC_ADDRESS=address, ASYNC_K=2, ASYNC_STEPS=steps, ASYNC_GO_FILE=go)
        processes += [rank_process(0, 2, **common), rank_process(1, 2, ASYNC_PAUSE_AT=7, **common)]
        ranks = [Lines(process) for process in processes[1:]]
        ranks[1].wait_for("rank 1 step 7 clock 7 reconnected 0")
        ranks[0].wait_for("rank 0 step 9 clock 9 reconnected 0")
        time.sleep(0.3)  # rank 0's 10th push reaches the server, which applies it and holds the answer
        wait_until(checkpoint.exists, timeout=10, what="the server's checkpoint")
        os.killpg(server.pid, signal.SIGKILL)
        server.communicate()
        clocks, version = saved_clocks(checkpoint)
        assert sum(clocks.values()) == version and (10 <= version < 17 if every == 10 else clocks == {0: 10, 1: 7}), \
            (clocks, version)
        go.touch()  # rank 1 goes on and finds the server gone too
        time.sleep(0.5)
        server, restarted_at = server_process(address, checkpoint, every=every)
        processes[0] = server
        assert restarted_at == address
        codes, outputs = finish(processes[1:], timeout=60)
        outputs = [ranks[rank].lines + outputs[rank].splitlines() for rank in (0, 1)]
        assert codes == [0, 0], outputs
        server.communicate(timeout=20)  # every rank has left: it writes its checkpoint and ends
    finally:
        kill(processes)
    log = (tmp_path / "server.ckpt.log").read_text()
    assert server.returncode == 0 and "resumed 1 served shard(s)" in log, log
    final = {}
    for rank, lines in enumerate(outputs):
        reported = [tuple(map(int, found)) for found in re.findall(rf"^rank {rank} step (\d+) clock (\d+) reconnected "
                                                                   r"(\d)$", "\n".join(lines), re.MULTILINE)]
        assert [step for step, _, _ in reported] == list(range(1, steps + 1)), lines
        (again,) = [step for step, _, reconnected in reported if reconnected]  # one step met the restarted server
        assert again == (10 if rank == 0 else 8), (rank, again)
        counted = clocks[rank] >= again  # its push of that step was in the checkpoint already: not sent again
        for step, clock, _ in reported:  # its own clock in the checkpoint, then one more per step
            expected = step if step < again else clocks[rank] + (not counted) + step - again
            assert clock == expected, (rank, step, clock, again, clocks)
        final[rank] = reported[-1][1]
    lost = max(0, 9 + 7 - version)  # the steps the ranks had been answered for that the checkpoint does not hold
    assert (lost > 0) == (every == 10)
    assert final[0] + final[1] == 2 * steps - lost  # every other push counted once: none lost, none applied twice
    assert saved_clocks(checkpoint) == (final, sum(final.values()))  # and the restarted server counted as they did


@pytest.mark.timeout(60)
def test_a_server_that_stays_dead_fails_the_rank_within_seconds_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv(served_model.RECONNECT_ENVIRONMENT_VARIABLE, "2")
    server, address = server_process("tcp://127.0.0.1:0", tmp_path / "server.ckpt", every=100, world_size=1)
    comm = None
    try:
        comm = PSCommunicator(address, 0, 1, timeout=20)
        distrain.manual_seed(0)
        model = DistributedDataParallel(nn.Linear(3, 2), comm=comm, ps_mode="async", staleness=0)
        optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)

        def step():
            optimizer.zero_grad()
            model(distrain.tensor(np.ones((2, 3), np.float32))).sum().backward()
            optimizer.step()

        step()
        os.killpg(server.pid, signal.SIGKILL)
        server.communicate()
        killed = time.monotonic()
        with pytest.raises(CommunicatorError) as failed:
            step()
        seconds = time.monotonic() - killed
    finally:
        if comm is not None:
            comm.close()
        kill([server])
    assert 1.5 < seconds < 8, seconds
    message = str(failed.value)
    assert f"the parameter server at {address} went away and did not come back within 2 s" in message, message
    assert "restart it with its checkpoint (--checkpoint)" in message and "$DISTRAIN_PS_RECONNECT_SECONDS" in message
