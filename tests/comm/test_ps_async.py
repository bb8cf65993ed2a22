"""Asynchronous parameter-server training end to end (NOTE [ Stale synchronous parallel ] in
distrain/comm/ps/stale_synchronous.py; test_ps_async_shard.py tests one served shard alone).

Real servers (ParameterServer threads of this process) and real rank processes
(ps_async_ranks_script.py), each under a timeout that kills its process group: K = 0 must give
synchronous training's bits; a rank that dies, freezes or is restarted must not stop the others.
In-process: a malformed serve through a real server, and the errors a user gets for arguments
that do not fit asynchronous mode.
"""
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import distrain
import distrain.distributed as dist
import distrain.spawn
from distrain import nn
from distrain.comm.base import CommunicatorError
from distrain.comm.local import LocalCommunicator
from distrain.comm.ps import modes, protocol
from distrain.comm.ps.client import PSCommunicator
from distrain.comm.ps.server import ParameterServer
from distrain.launch import main as launch_main
from distrain.parallel import DistributedDataParallel

from .test_ps import REPO, finish, isolated  # noqa: F401 (isolated: the autouse fixture)

SCRIPT = os.path.join(os.path.dirname(__file__), "ps_async_ranks_script.py")
MODE_VARIABLES = (modes.MODE_ENVIRONMENT_VARIABLE, modes.STALENESS_ENVIRONMENT_VARIABLE,
                  modes.DAMPING_ENVIRONMENT_VARIABLE)


@pytest.fixture(autouse=True)
def no_mode_or_layout_from_outside(monkeypatch):
    for name in MODE_VARIABLES + (protocol.ADDRESSES_ENVIRONMENT_VARIABLE, protocol.PARTITION_ENVIRONMENT_VARIABLE):
        monkeypatch.delenv(name, raising=False)


def rank_process(rank, world_size, **variables):
    environment = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), RANK=str(rank),
                       WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       NUMBA_NUM_THREADS="1", **{name: str(value) for name, value in variables.items()})
    return subprocess.Popen([sys.executable, SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=environment)


def kill(processes):
    """End every process still running (a stopped one too) and close every pipe (after a failure, finish() did not)."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        if not process.stdout.closed:
            process.communicate()


def clocks(server):
    """{rank: gradients pushed} on the server's one served shard (read from the test's thread)."""
    shards = list(server.shards.values())
    return dict(shards[0].clock) if shards else {}


def wait_for_clocks(server, ranks, at_least, processes, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not all(clocks(server).get(rank, 0) >= at_least for rank in ranks):
        assert all(process.poll() is None for process in processes), "a rank ended early"
        assert time.monotonic() < deadline, f"ranks {ranks} did not reach clock {at_least}: {clocks(server)}"
        time.sleep(0.02)


def reports(outputs):
    """{rank: {step: digest}} from the ranks' "rank R step S DIGEST" lines."""
    found = {}
    for rank, step, digest in re.findall(r"^rank (\d) step (\d+) (\w+)$", "".join(outputs), re.MULTILINE):
        found.setdefault(int(rank), {})[int(step)] = digest
    return found


def assert_lockstep(by_rank):
    """K = 0, ranks that started together: after its S-th step every rank holds the same parameters."""
    for step in {step for digests in by_rank.values() for step in digests}:
        digests = {rank: digests[step] for rank, digests in by_rank.items() if step in digests}
        assert len(set(digests.values())) == 1, (step, digests)


def drop_warnings(caplog, rank):
    return [record for record in caplog.records if record.name == "distrain.ps" and
            f"rank {rank}'s connection closed" in record.getMessage() and "dropped" in record.getMessage()]


# -- K = 0 is synchronous training ---------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_k0_gives_synchronous_trainings_bits_on_one_and_two_servers():
    """Synchronous training on one server against K = 0 on one and on two (synchronous training's bits are the same
    on any number of servers: test_ps_servers.py)."""
    world = 3  # two ranks' sums are the same in any order: three tell rank order from another
    sets = [[ParameterServer(world).start() for _ in range(count)] for count in (1, 2)]
    try:
        addresses = [",".join(server.address for server in servers) for servers in sets]
        runs = [run for optimizer in ("sgd", "adam") for run in (f"sync|0|{optimizer}|{addresses[0]}",
                                                                 f"async|0|{optimizer}|{addresses[0]}",
                                                                 f"async|0|{optimizer}|{addresses[1]}")]
        processes = [rank_process(rank, world, ASYNC_JOB="runs", ASYNC_RUNS=";".join(runs)) for rank in range(world)]
        codes, outputs = finish(processes, timeout=75)
        shards_per_server = [len(server.shards) for server in sets[1]]
    finally:
        for servers in sets:
            for server in servers:
                server.close()
    assert codes == [0] * world, outputs
    assert min(shards_per_server) > 0, shards_per_server  # the two servers shared the model's shards
    found = re.findall(r"rank (\d) run (\w+)\|0\|(\w+)\|(\d) shards (\d+) digest (\w+) staleness (.*)",
                       "".join(outputs))
    assert sorted((mode, optimizer, servers) for _, mode, optimizer, servers, *_ in found) == sorted(
        (mode, optimizer, servers) for mode, servers in (("sync", "1"), ("async", "1"), ("async", "2"))
        for optimizer in ("sgd", "adam") for _ in range(world)), outputs
    digests = {"sgd": set(), "adam": set()}
    for rank, mode, optimizer, servers, shards, digest, histogram in found:
        digests[optimizer].add(digest)
        if mode == "async":
            assert int(shards) > 4 and histogram == "{0: 4}", (rank, mode, optimizer, servers, shards, histogram)
    assert len(digests["sgd"]) == len(digests["adam"]) == 1, found  # sync and async, every rank: the same bits
    assert digests["sgd"] != digests["adam"]


# -- ranks that go and come -----------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_a_rank_that_dies_is_dropped_and_the_same_rank_restarted_joins_at_the_current_clock(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="distrain.ps")
    world, stop_file = 3, tmp_path / "restarted rank done"
    server = ParameterServer(world).start()
    processes = []
    try:
        common = dict(ASYNC_JOB="steps", ASYNC_ADDRESS=server.address, ASYNC_K=0)
        # at most 1000 steps: their lines (unread until the end) stay within a pipe's buffer
        processes = [rank_process(rank, world, ASYNC_STEPS=1000, ASYNC_STOP_FILE=stop_file, **common)
                     for rank in (0, 1)]
        processes.append(rank_process(2, world, ASYNC_STEPS=1000, ASYNC_DIE_AT=3, **common))
        dying_code = processes[2].wait(timeout=40)
        wait_for_clocks(server, (0, 1), 8, processes[:2])  # K = 0: only if rank 2 was dropped
        assert drop_warnings(caplog, 2), caplog.text
        processes.append(rank_process(2, world, ASYNC_STEPS=5, ASYNC_WRITE_STOP_FILE=stop_file, **common))
        codes, outputs = finish(processes, timeout=60)
    finally:
        kill(processes)
        server.close()
    assert dying_code == 3 and codes == [0, 0, 3, 0], outputs
    steady, dying, restarted = reports(outputs[:2]), reports([outputs[2]])[2], reports([outputs[3]])[2]
    assert sorted(dying) == [1, 2, 3] and sorted(restarted) == [1, 2, 3, 4, 5], outputs[2:]
    assert_lockstep({**steady, 2: dying})
    # K = 0: the restarted rank's parameters after its i-th step are the others' after their (c + i)-th, where c is
    # the clock it joined at: the slowest live rank's (8 or more when it started), not its own old 3, nor 0
    joined_at = [clock for clock in steady[0] if all(steady[0].get(clock + i) == restarted[i] for i in range(1, 6))]
    assert len(joined_at) == 1 and joined_at[0] >= 8, (joined_at, restarted, steady[0])
    for rank in (0, 1):
        assert max(steady[rank]) >= joined_at[0] + 5, outputs[rank]
        assert f"rank {rank} done after {max(steady[rank])} steps" in outputs[rank]


@pytest.mark.timeout(60)
def test_a_frozen_rank_is_dropped_after_the_heartbeat_timeout_and_the_others_finish(caplog):
    world, heartbeat = 3, 2.0
    server = ParameterServer(world, heartbeat_timeout=heartbeat).start()
    processes = []
    try:
        common = dict(ASYNC_JOB="steps", ASYNC_ADDRESS=server.address, ASYNC_K=0, ASYNC_SLEEP=0.01)
        processes = [rank_process(rank, world, ASYNC_STEPS=20 if rank < 2 else 1000, **common) for rank in range(3)]
        wait_for_clocks(server, (0, 1, 2), 3, processes)
        os.killpg(processes[2].pid, signal.SIGSTOP)
        frozen = time.monotonic()
        codes, outputs = finish(processes[:2], timeout=30)
        seconds = time.monotonic() - frozen
    finally:
        kill(processes)
        server.close()
    assert codes == [0, 0], outputs
    assert all(f"rank {rank} done after 20 steps" in outputs[rank] for rank in (0, 1)), outputs
    assert heartbeat - 0.5 < seconds < heartbeat + 5, seconds  # held by the frozen rank until dropped, then quick
    assert drop_warnings(caplog, 2), caplog.text
    assert_lockstep(reports(outputs))


# -- through a real server: what it refuses, and that it goes on -------------------------------------------

SGD_GROUPS = [{"lr": 0.5, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
               "maximize": False}]


def serve_request(**changes):
    return {"op": "serve", "table": 0, "shard": 0, "model": "digest", "dtype": "float32", "shape": [4],
            "optimizer": "SGD", "groups": SGD_GROUPS, "runs": [[0, 4, 0]], "staleness": 0, "damping": False,
            **changes}


@pytest.mark.timeout(30)
def test_a_malformed_serve_gets_an_error_answer_and_the_server_keeps_serving():
    server = ParameterServer(1).start()
    try:
        comm = PSCommunicator(server.address, 0, 1, timeout=5)
        connection = comm.connection
        try:
            for request, match in [
                (serve_request(optimizer="os.system"), "optimizer 'os.system' cannot be served"),
                (serve_request(groups=[{**SGD_GROUPS[0], "lr": -1.0}]), "optimizer SGD: Invalid learning rate: -1.0"),
                (serve_request(runs=[[0, 3, 0]]), "the runs cover 3 elements, the shard has 4"),
                ({k: v for k, v in serve_request().items() if k != "runs"}, "serve: field 'runs' must be list"),
                (serve_request(staleness="2"), "serve: field 'staleness' must be int"),
                (serve_request(dtype="object"), "serve: dtype 'object' not one of"),
                ({"op": "push", "table": 5, "shard": 0, "clock": 0, "dtype": "float32", "shape": [4],
                  "groups": SGD_GROUPS}, "pushed to shard 0 of model 5, which this server does not serve"),
            ]:
                with pytest.raises(CommunicatorError, match=match):
                    connection.request(request, np.ones(4, np.float32)).wait()
            assert server.refused == 7 and server.shards == {} and server._thread.is_alive()
            start = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
            header, payload = connection.request(serve_request(), start).wait()
            assert header["clock"] == 0 and b"".join(payload) == start.tobytes()
            gradient = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
            header, payload = connection.request({"op": "push", "table": 0, "shard": 0, "clock": 0,
                                                  "dtype": "float32", "shape": [4], "groups": SGD_GROUPS},
                                                 gradient).wait()
            assert header["clock"] == 1 and header["version"] == 1
            stepped = np.frombuffer(b"".join(payload), np.float32)
            assert stepped.tolist() == (start - np.float32(0.5) * gradient).tolist()  # SGD, lr 0.5: exact
        finally:
            comm.close()
    finally:
        server.close()


# -- arguments that do not fit asynchronous mode -------------------------------------------------------------

@pytest.fixture
def one_rank_job():
    """A parameter server for one rank and that rank's communicator, in this process."""
    server = ParameterServer(1).start()
    comm = PSCommunicator(server.address, 0, 1, timeout=5)
    try:
        yield comm
    finally:
        comm.close()
        server.close()


def small_model():
    distrain.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def train_steps(model, optimizer, steps=4):
    rng = np.random.default_rng(1)
    for _ in range(steps):
        inputs, targets = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 3, 6)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(distrain.tensor(inputs)), distrain.tensor(targets)).backward()
        optimizer.step()


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_one_rank_async_k0_trains_exactly_as_plain_local_training(one_rank_job, optimizer):
    make = {"SGD": lambda params: distrain.optim.SGD(params, lr=0.1, momentum=0.9),
            "Adam": lambda params: distrain.optim.Adam(params, lr=0.01)}[optimizer]
    local = small_model()
    train_steps(local, make(local.parameters()))
    served = small_model()
    model = DistributedDataParallel(served, comm=one_rank_job, ps_mode="async", staleness=0)
    train_steps(model, make(model.parameters()))
    assert model.staleness_histogram == {0: 4}
    for expected, got in zip(local.parameters(), served.parameters()):
        assert got.detach().numpy().tobytes() == expected.detach().numpy().tobytes()


def test_async_needs_the_parameter_server_communicator_and_staleness_needs_async():
    with pytest.raises(ValueError, match=r"DistributedDataParallel\(ps_mode=\"async\"\) needs the whole job's "
                                         r"parameter-server communicator \(backend \"ps\"\), but this one is 'local'"):
        DistributedDataParallel(small_model(), comm=LocalCommunicator(), ps_mode="async")
    for arguments in ({"ps_mode": "sync", "staleness": 2}, {"staleness": 2}, {"staleness_damping": True}):
        with pytest.raises(ValueError, match=r"staleness= and staleness_damping= are for ps_mode=\"async\" .*this "
                                             "model trains synchronously"):
            DistributedDataParallel(small_model(), comm=LocalCommunicator(), **arguments)
    with pytest.raises(ValueError, match=r"DistributedDataParallel\(ps_mode=\.\.\.\) must be \"sync\" or \"async\", "
                                         "got 'asynchronous'"):
        DistributedDataParallel(small_model(), comm=LocalCommunicator(), ps_mode="asynchronous")


def test_async_refuses_gradient_compression_and_a_bad_staleness(one_rank_job):
    with pytest.raises(ValueError, match="gradient_compression is for synchronous training"):
        DistributedDataParallel(small_model(), comm=one_rank_job, ps_mode="async", gradient_compression="fp16")
    with pytest.raises(ValueError, match=r"DistributedDataParallel\(staleness=\.\.\.\) must be a whole number of "
                                         r"steps >= 0, or inf \(unbounded\), got -1"):
        DistributedDataParallel(small_model(), comm=one_rank_job, ps_mode="async", staleness=-1)


def test_lbfgs_in_async_mode_is_refused_naming_it_and_nothing_moves(one_rank_job):
    local = small_model()
    model = DistributedDataParallel(local, comm=one_rank_job, ps_mode="async")
    optimizer = distrain.optim.LBFGS(model.parameters())
    before = [p.detach().numpy().copy() for p in local.parameters()]
    inputs = distrain.tensor(np.ones((2, 5), np.float32))

    def closure():
        optimizer.zero_grad()
        loss = model(inputs).pow(2).mean()
        loss.backward()
        return loss

    with pytest.raises(distrain.DistrainError, match="LBFGS cannot train asynchronously on the parameter servers"):
        optimizer.step(closure)
    assert all((p.detach().numpy() == b).all() for p, b in zip(local.parameters(), before))


@pytest.mark.parametrize("where", ["after", "before", "a group before"])
def test_an_optimizer_holding_a_parameter_besides_the_models_is_refused_naming_it(one_rank_job, where):
    local = small_model()
    model = DistributedDataParallel(local, comm=one_rank_job, ps_mode="async")
    extra = nn.Parameter(distrain.tensor(np.zeros(3, np.float32)))
    params = {"after": list(model.parameters()) + [extra], "before": [extra] + list(model.parameters()),
              "a group before": [{"params": [extra]}, {"params": list(model.parameters())}]}[where]
    optimizer = distrain.optim.SGD(params, lr=0.1)
    before = [p.detach().numpy().copy() for p in local.parameters()]
    with pytest.raises(distrain.DistrainError, match=r"the optimizer must hold exactly the model's parameters "
                                                     r"\(4 of them; it holds 5\)"):
        train_steps(model, optimizer, steps=1)
    assert all((p.detach().numpy() == b).all() for p, b in zip(local.parameters(), before))


@pytest.mark.parametrize("options", [dict(ps_mode="async"), dict(staleness=2), dict(staleness_damping=True)])
def test_init_refuses_asynchronous_options_on_another_backend(options):
    (name, value), = options.items()
    with pytest.raises(ValueError, match=rf"init: {name}={re.escape(repr(value))} is for the parameter-server "
                                         r"backend \(\"ps\"\), but this job uses 'local'"):
        dist.init("local", **options)
    assert not dist.is_initialized()


@pytest.mark.parametrize("value, expected", [("inf", math.inf), (" Infinity ", math.inf), ("3", 3), (3, 3),
                                             (2.0, 2), (math.inf, math.inf), (0, 0)])
def test_staleness_values(value, expected):
    got = modes.staleness(value, {})
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value", [-1, "-1", 2.5, "2.5", True, "lots", float("nan")])
def test_a_staleness_that_is_not_a_whole_number_of_steps_is_refused(value):
    with pytest.raises(ValueError, match=r"staleness must be a whole number of steps >= 0, or inf \(unbounded\), got"):
        modes.staleness(value, {})


def test_modes_from_the_environment():
    environ = {modes.MODE_ENVIRONMENT_VARIABLE: "async", modes.STALENESS_ENVIRONMENT_VARIABLE: "inf",
               modes.DAMPING_ENVIRONMENT_VARIABLE: "1"}
    assert (modes.ps_mode(None, environ), modes.staleness(None, environ), modes.damping(None, environ)) == \
        ("async", math.inf, True)
    assert (modes.ps_mode(None, {}), modes.staleness(None, {}), modes.damping(None, {})) == ("sync", 0, False)
    assert modes.ps_mode("sync", environ) == "sync" and modes.staleness(1, environ) == 1  # arguments win
    with pytest.raises(ValueError, match=rf"\${modes.STALENESS_ENVIRONMENT_VARIABLE} must be a whole number .*got "
                                         "'soon'"):
        modes.staleness(None, {modes.STALENESS_ENVIRONMENT_VARIABLE: "soon"})
    with pytest.raises(ValueError, match=rf"\${modes.MODE_ENVIRONMENT_VARIABLE} must be \"sync\" or \"async\""):
        modes.ps_mode(None, {modes.MODE_ENVIRONMENT_VARIABLE: "fast"})


@pytest.mark.parametrize("argv, message", [
    (["--ps-mode", "async"], "--ps-mode is for --backend ps (the parameter server), not mpi"),
    (["--backend", "nccl", "--staleness", "2"], "--staleness is for --backend ps (the parameter server), not nccl"),
    (["--backend", "ps", "--staleness", "2"], "--staleness and --staleness-damping are for --ps-mode async"),
    (["--backend", "ps", "--ps-mode", "sync", "--staleness-damping"], "are for --ps-mode async"),
    (["--backend", "ps", "--ps-mode", "async", "--staleness", "-1"],
     "--staleness must be a whole number of steps >= 0, or inf (unbounded), got -1"),
    (["--backend", "ps", "--ps-mode", "async", "--staleness", "2.5"], "got '2.5'"),
    (["--backend", "ps", "--ps-mode", "async", "--staleness", "lots"], "got 'lots'"),
    (["--backend", "ps", "--ps-mode", "fast"], "argument --ps-mode: invalid choice: 'fast'"),
])
def test_bad_asynchronous_launcher_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        launch_main(["-n", "2", *argv, "train.py"])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not any(name in os.environ for name in MODE_VARIABLES)


@pytest.mark.parametrize("flags, expected", [([], ["async", "0", "0"]),
                                            (["--staleness", "inf", "--staleness-damping"], ["async", "inf", "1"]),
                                            (["--staleness", "4"], ["async", "4", "0"])])
def test_the_launcher_hands_the_ranks_its_asynchronous_options(monkeypatch, flags, expected):
    started = []

    def run_workers(nproc, backend, script_argv, **options):  # instead of starting ranks: what they would inherit
        started.append([os.environ.get(name) for name in MODE_VARIABLES])
        return 0

    monkeypatch.setattr(distrain.spawn, "run_workers", run_workers)
    saved = dict(os.environ)
    try:
        assert launch_main(["-n", "2", "--backend", "ps", "--ps-mode", "async", *flags, "train.py"]) == 0
    finally:  # the launcher sets its ranks' variables in its own environment
        os.environ.clear()
        os.environ.update(saved)
    assert started == [expected]
    environ = dict(zip(MODE_VARIABLES, expected))
    assert (modes.ps_mode(None, environ), modes.staleness(None, environ), modes.damping(None, environ)) == \
        ("async", math.inf if expected[1] == "inf" else int(expected[1]), expected[2] == "1")
