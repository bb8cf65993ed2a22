"""Several parameter servers (NOTE [ Partitions on several servers ] in distrain/comm/ps/partitions.py).

The partition plan and the settings' parsing are checked in-process; allreduces run with the
servers as threads and each rank as a thread with its own PSCommunicator (test_ps.py's
helpers), against NumPy's sum in rank order and bit for bit against one server; training
(DistributedDataParallel) and a server killed mid-job run in real processes, under timeouts
that kill what they started.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import distrain.distributed as dist
from distrain.comm.base import CommunicatorError
from distrain.comm.ps import partitions, protocol
from distrain.comm.ps.client import PSCommunicator
from distrain.comm.ps.partitions import partition_bytes, plan, server_addresses
from distrain.comm.ps.server import ParameterServer
from distrain.launch import main as launch_main

from .ps_ranks_script import data, reduce_in_rank_order
from .test_ps import REPO, SECRET, finish, isolated, run_ok  # noqa: F401 (isolated: the autouse fixture)

DDP_SCRIPT = os.path.join(os.path.dirname(__file__), "ps_servers_ddp_script.py")
TINY_PARTITION_MB = 1000 / 2 ** 20  # 1000 bytes: a few hundred elements a partition, many per array


@pytest.fixture(autouse=True)
def no_layout_from_outside(monkeypatch):
    """No server list or partition size leaks in from the environment (test_ps.isolated does the rest)."""
    monkeypatch.delenv(protocol.ADDRESSES_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.delenv(protocol.PARTITION_ENVIRONMENT_VARIABLE, raising=False)


@pytest.fixture
def tiny_partitions(monkeypatch):
    monkeypatch.setenv(protocol.PARTITION_ENVIRONMENT_VARIABLE, str(TINY_PARTITION_MB))


def start_servers(count, world_size):
    return [ParameterServer(world_size).start() for _ in range(count)]


def close_all(servers):
    for server in servers:
        server.close()


# -- the plan -------------------------------------------------------------------------------------

@pytest.mark.parametrize("count, itemsize, partition, servers", [
    (10_000_001, 4, 4 * 2 ** 20, 2), (1_000_003, 8, 100_000, 3), (999, 2, 64, 4), (7, 4, 4, 3), (5, 4, 1, 2)])
def test_the_plan_covers_the_array_in_partitions_balanced_over_the_servers(count, itemsize, partition, servers):
    slices = plan(count, itemsize, partition, servers)
    assert [start for start, _, _ in slices] == [0] + [stop for _, stop, _ in slices[:-1]] and slices[-1][1] == count
    sizes = [stop - start for start, stop, _ in slices]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert max(sizes) * itemsize <= partition or max(sizes) == 1  # an element is never split
    assert len(slices) % servers == 0 or len(slices) == count
    loads = [sum(size for size, (_, _, s) in zip(sizes, slices) if s == server) for server in range(servers)]
    assert max(loads) - min(loads) <= len(slices) // servers + 1  # within one element per slice
    assert plan(count, itemsize, partition, servers) == slices  # the same on every rank: nothing but its arguments


def test_one_partition_goes_whole_to_server_zero_and_one_server_gets_every_slice():
    assert plan(2 ** 18, 4, 2 ** 20, 4) is None  # exactly one partition
    assert len(plan(2 ** 18 + 1, 4, 2 ** 20, 4)) == 4
    slices = plan(10 ** 6, 4, 2 ** 20, 1)
    assert len(slices) == 4 and {server for _, _, server in slices} == {0}


# -- settings -------------------------------------------------------------------------------------

def test_server_lists_from_the_argument_and_the_environment():
    many, one = protocol.ADDRESSES_ENVIRONMENT_VARIABLE, protocol.ADDRESS_ENVIRONMENT_VARIABLE
    assert server_addresses("tcp://a:1, tcp://b:2", {}) == ["tcp://a:1", "tcp://b:2"]
    assert server_addresses(("tcp://a:1",), {}) == ["tcp://a:1"]
    assert server_addresses(None, {one: "tcp://a:1"}) == ["tcp://a:1"]  # one server, as before
    assert server_addresses(None, {many: "tcp://a:1,tcp://b:2", one: "tcp://a:1"}) == ["tcp://a:1", "tcp://b:2"]
    with pytest.raises(ValueError, match=rf"\${one} is 'tcp://c:3' but the first of \${many} is 'tcp://a:1'"):
        server_addresses(None, {many: "tcp://a:1,tcp://b:2", one: "tcp://c:3"})
    with pytest.raises(ValueError, match=r"names the parameter server\(s\) \['tcp://a:1'\] more than once"):
        server_addresses("tcp://a:1,tcp://b:2,tcp://a:1", {})
    with pytest.raises(ValueError, match="must be non-empty strings"):
        server_addresses("tcp://a:1,,tcp://b:2", {})
    with pytest.raises(ValueError, match=f"set {one} \\(or {many} for several servers\\)"):
        server_addresses(None, {})


@pytest.mark.parametrize("value", [0, -1, "0", "-4", "lots", float("nan"), float("inf"), 1e-9])
def test_a_partition_size_that_is_not_positive_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=rf"partition_mb=: .*positive number of MiB.*got {re.escape(repr(value))}"):
        partition_bytes(value, {})
    variable = protocol.PARTITION_ENVIRONMENT_VARIABLE
    with pytest.raises(ValueError, match=rf"\${variable}: .*got '{re.escape(str(value))}'"):
        partition_bytes(None, {variable: str(value)})


def test_partition_sizes_in_mib():
    assert partition_bytes(None, {}) == 4 * 2 ** 20 == partitions.DEFAULT_PARTITION_BYTES
    assert partition_bytes(0.5, {protocol.PARTITION_ENVIRONMENT_VARIABLE: "8"}) == 2 ** 19  # the argument wins
    assert partition_bytes(None, {protocol.PARTITION_ENVIRONMENT_VARIABLE: "8"}) == 8 * 2 ** 20


@pytest.mark.parametrize("argv, message", [
    (["--servers", "0"], "--servers must be at least 1"),
    (["--servers", "-2"], "--servers must be at least 1"),
    (["--servers", "2", "--backend", "nccl"], "--servers 2 is for --backend ps"),
    (["--partition-mb", "0"], "--partition-mb: the parameter server's partition size must be a positive number"),
    (["--partition-mb", "-3"], "got -3.0"),
])
def test_bad_server_options_are_usage_errors(argv, message, capsys):
    backend = [] if "--backend" in argv else ["--backend", "ps"]
    with pytest.raises(SystemExit) as stopped:
        launch_main(["-n", "2", *backend, *argv, "train.py"])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_partition_mb_is_for_the_parameter_server_backend():
    with pytest.raises(ValueError, match=r"partition_mb=2 is for the parameter-server backend.*'local'"):
        dist.init("local", partition_mb=2)
    assert not dist.is_initialized()


# -- allreduce on several servers ---------------------------------------------------------------------

CASES = [("float32", (100_003,), "sum"), ("float32", (301, 7), "mean"), ("float16", (4_099,), "sum"),
         ("float64", (2_001,), "max"), ("int64", (999,), "min"), ("int32", (5_000,), "sum")]


def allreduce_everything(comm):
    results = []
    for number, (dtype, shape, op) in enumerate(CASES):
        mine = data(comm.rank, dtype, shape, salt=number)
        if dtype == "float32":  # magnitudes 1e-4..1e8: the rounding of a sum depends on its order
            mine *= np.random.default_rng((number, comm.rank)).uniform(-4, 8, shape).astype(np.float32) ** 10
        handle = comm.allreduce_async(mine, op)  # all in flight, several arrays at once
        results.append((mine, handle))
    for _, handle in results:
        handle.wait()
    return [mine for mine, _ in results]


def test_allreduce_in_partitions_is_bit_identical_for_any_number_of_servers(tiny_partitions):
    world, outcomes = 3, {}
    for count in (1, 2, 3):
        servers = start_servers(count, world)
        try:
            addresses = [server.address for server in servers]
            outcomes[count] = run_ok(addresses, world, lambda comm: (allreduce_everything(comm),
                                                                     list(comm.partition_collectives)))
        finally:
            close_all(servers)
    for rank in range(world):
        for count in (2, 3):
            assert min(outcomes[count][rank][1][1:]) > 10  # every server summed partitions
            for (dtype, shape, op), one, several in zip(CASES, outcomes[1][rank][0], outcomes[count][rank][0]):
                assert several.dtype == np.dtype(dtype) and several.shape == shape
                assert np.array_equal(one.view(np.uint8), several.view(np.uint8)), (count, dtype, op)
        for number, ((dtype, shape, op), got) in enumerate(zip(CASES, outcomes[1][rank][0])):
            if op != "mean":
                everyone = [data(r, dtype, shape, salt=number) for r in range(world)]
                if dtype == "float32":
                    everyone = [part * np.random.default_rng((number, r)).uniform(-4, 8, shape).astype(np.float32)
                                ** 10 for r, part in enumerate(everyone)]
                assert np.array_equal(got, reduce_in_rank_order(everyone, op)), (dtype, op)


def test_everything_but_large_allreduces_stays_on_server_zero(tiny_partitions):
    servers = start_servers(2, 2)

    def body(comm):
        comm.allreduce(np.ones(10, np.float32))  # one partition's worth: whole, on server 0
        comm.broadcast(np.ones(100_000, np.float64), root=1)
        comm.allgather(np.ones(50_000, np.float32))
        comm.barrier()
        comm.connection.store_set(f"key-{comm.rank}", b"value")
        pair = comm.split([0, 1])
        large = np.full(100_000, comm.rank + 1.0)
        pair.allreduce(large)  # a subgroup's collectives stay on server 0, however large
        assert (large == 3).all()
        pair.close()
        return list(comm.partition_collectives), comm.collectives

    try:
        results = run_ok([server.address for server in servers], 2, body)
    finally:
        close_all(servers)
    assert all(partition_counts == [0, 0] for partition_counts, _ in results.values()), results


def test_ranks_given_different_servers_or_partitions_are_refused_naming_both():
    servers = start_servers(2, 2)
    both = [server.address for server in servers]
    try:
        first = PSCommunicator(both, 0, 2, timeout=5, partition_mb=1)
        try:
            with pytest.raises(CommunicatorError) as refused:
                PSCommunicator(both[:1], 1, 2, timeout=5, partition_mb=1)
            assert re.search(rf"rank 1 was started with the parameter servers \['{both[0]}'\] and partitions of "
                             rf"1048576 bytes, but rank 0 with \['{both[0]}', '{both[1]}'\] and 1048576 bytes",
                             str(refused.value)), refused.value
            assert protocol.ADDRESSES_ENVIRONMENT_VARIABLE in str(refused.value)
            with pytest.raises(CommunicatorError, match="partitions of 2097152 bytes, but rank 0 with .* 1048576"):
                PSCommunicator(both, 1, 2, timeout=5, partition_mb=2)
        finally:
            first.close()
    finally:
        close_all(servers)


def test_partitions_over_a_servers_message_limit_are_refused_before_anything_is_sent(monkeypatch):
    variable = protocol.PARTITION_ENVIRONMENT_VARIABLE
    monkeypatch.setenv(variable, "2")
    servers = [ParameterServer(2).start(), ParameterServer(2, max_message_bytes=2 ** 20).start()]

    def body(comm):
        with pytest.raises(CommunicatorError, match=rf"partitions of 1572864 bytes to the parameter server at "
                                                    rf"{servers[1].address}, over its limit of 1048576 bytes: lower "
                                                    rf"the partition size \(\${variable}"):
            comm.allreduce(np.zeros(3 * 2 ** 18, np.float32))  # 3 MiB: 2 partitions of 1.5 MiB
        fits = np.full(2 ** 19, comm.rank + 1.0, np.float32)  # 2 MiB: one partition, whole to server 0
        comm.allreduce(fits)
        return fits, list(comm.partition_collectives), comm.collectives

    try:
        results = run_ok([server.address for server in servers], 2, body)
    finally:
        close_all(servers)
    for fits, counts, collectives in results.values():  # the refused call used up no collective number
        assert (fits == 3).all() and counts == [0, 0] and collectives == 1


# -- real processes ----------------------------------------------------------------------------------

def rank_environment(rank, world_size, **extra):
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), RANK=str(rank),
                WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)


@pytest.mark.timeout(90)
def test_ddp_training_is_bit_identical_on_one_two_and_three_servers():
    world = 3
    sets = [start_servers(count, world) for count in (1, 2, 3)]
    try:
        server_sets = ";".join(",".join(server.address for server in servers) for servers in sets)
        processes = [subprocess.Popen([sys.executable, DDP_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, start_new_session=True,
                                      env=rank_environment(rank, world, PS_SERVER_SETS=server_sets))
                     for rank in range(world)]
        codes, outputs = finish(processes, timeout=75)
    finally:
        for servers in sets:
            close_all(servers)
    assert codes == [0] * world, outputs
    reports = re.findall(r"rank (\d) servers (\d) partitions (\d+) digest (\w+)", "".join(outputs))
    assert len(reports) == world * 3, outputs
    assert len({digest for *_, digest in reports}) == 1, reports  # every rank, every number of servers
    assert all(int(partitions_sent) > 0 for _, servers, partitions_sent, _ in reports if servers != "1"), reports


def server_process(world_size):
    """A `python -m distrain.comm.ps.server` process on loopback and its address."""
    process = subprocess.Popen([sys.executable, "-m", "distrain.comm.ps.server", "--world-size", str(world_size),
                                "--bind", "tcp://127.0.0.1:0", "--quiet"], stdout=subprocess.PIPE, text=True,
                               start_new_session=True, env=rank_environment(0, world_size))
    return process, process.stdout.readline().strip()


@pytest.mark.timeout(60)
def test_a_server_that_dies_mid_job_is_named_within_seconds_not_after_the_timeout():
    server_zero = ParameterServer(2).start()
    one, address = server_process(2)
    try:
        addresses = [server_zero.address, address]
        failures, started = {}, threading.Event()

        def rank_main(rank):
            comm = PSCommunicator(addresses, rank, 2, timeout=30, partition_mb=TINY_PARTITION_MB)
            try:
                if rank == 0:
                    handle = comm.allreduce_async(np.ones(10_000, np.float32))  # rank 1 never joins it
                    started.set()
                    begun = time.monotonic()
                    try:
                        handle.wait()
                    except CommunicatorError as error:
                        failures[rank] = (str(error), time.monotonic() - begun)
                else:
                    started.wait(10)
                    time.sleep(0.3)
                    os.killpg(one.pid, signal.SIGKILL)
                    one.wait(10)
                    time.sleep(0.3)  # the disconnection reaches this rank's connection too
                    begun = time.monotonic()
                    try:
                        comm.allreduce(np.ones(10_000, np.float32))
                    except CommunicatorError as error:
                        failures[rank] = (str(error), time.monotonic() - begun)
            finally:
                comm.close()

        threads = [threading.Thread(target=rank_main, args=(rank,), daemon=True) for rank in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        if one.poll() is None:
            os.killpg(one.pid, signal.SIGKILL)
        one.wait()
        one.stdout.close()
        server_zero.close()
    assert sorted(failures) == [0, 1], failures
    for rank, (message, seconds) in failures.items():
        assert f"parameter server 1 of 2 at {address} closed its connection" in message, message
        assert seconds < 5, (rank, seconds, message)


KILLED_SERVER_SCRIPT = """
import time
import numpy as np
import distrain.distributed as dist
comm = dist.init(timeout=60)
comm.barrier()
print("ready", comm.rank, len(comm.connections), flush=True)
for _ in range(600):
    comm.allreduce(np.ones(2 ** 20, np.float32))  # 4 MiB, one partition: server 0's alone
    time.sleep(0.05)
"""


def children_running(parent, module):
    """The pids of `parent`'s child processes that run `python -m module`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().decode(errors="replace").split("\0")
        except (FileNotFoundError, ProcessLookupError, ValueError, PermissionError):
            continue
        if ppid == parent and module in arguments:
            found.append(int(entry))
    return found


@pytest.mark.timeout(90)
def test_the_launcher_starts_the_servers_and_a_killed_one_ends_the_job_named(tmp_path):
    """The launcher watches its servers: one killed ends the job within seconds even while no rank uses it."""
    script = tmp_path / "train.py"
    script.write_text(KILLED_SERVER_SCRIPT)
    environment = rank_environment(0, 1)
    for name in ("RANK", "WORLD_SIZE", protocol.SECRET_ENVIRONMENT_VARIABLE):
        environment.pop(name)
    launcher = subprocess.Popen([sys.executable, "-m", "distrain.launch", "-n", "2", "--backend", "ps", "--servers",
                                 "2", str(script)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True, env=environment)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(launcher.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 40
        while sum("ready" in line for line in lines) < 2:
            assert time.monotonic() < deadline and launcher.poll() is None, "".join(lines)
            time.sleep(0.05)
        assert all(line.endswith(" 2\n") for line in lines if "ready" in line), lines  # two servers each
        servers = children_running(launcher.pid, "distrain.comm.ps.server")
        assert len(servers) == 1, servers  # server 0 is the launcher's own
        killed = time.monotonic()
        os.kill(servers[0], signal.SIGKILL)
        code = launcher.wait(timeout=30)
        seconds = time.monotonic() - killed
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        reader.join(5)
        launcher.stdout.close()
    output = "".join(lines)
    assert code != 0 and seconds < 10, (code, seconds, output)
    assert "the job cannot go on without its parameter servers; stopped rank(s) [0, 1]" in output, output
    assert re.search(rf"distrain.launch: parameter server 1 at tcp://127\.0\.0\.1:\d+ \(pid {servers[0]}\) was "
                     "killed by signal SIGKILL", output), output
