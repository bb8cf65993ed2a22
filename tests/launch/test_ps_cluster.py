"""Several machines without MPI: one launcher per node around node 0's authenticated rendezvous server.

Run on one machine: "ssh" is a stand-in that runs the command locally, and the nodes are
two launchers on 127.0.0.1, each starting 2 ranks of a world of 4.
"""
import os
import re
import sys
import textwrap

import pytest

from tests.process_group import free_port, run_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = textwrap.dedent("""
    import os
    import numpy as np
    import distrain.distributed as dist
    comm = dist.init(timeout=30)
    value = np.array([float(comm.rank + 1)])
    comm.allreduce(value)
    large = np.full(300_000, comm.rank + 1.0)  # 2.4 MB: partitions of at most 1 MiB, on every server
    comm.allreduce(large)
    assert (large == 1 + 2 + 3 + 4).all()
    print("rank", comm.rank, "of", comm.size, "local", os.environ["LOCAL_RANK"], "backend", comm.name,
          "secret", bool(os.environ.get("DISTRAIN_PS_SECRET")), "sum", value[0], "servers",
          len(comm.connections), comm.partition_collectives[1:], flush=True)
    dist.shutdown()
""")


def run(command, env, cwd, timeout=120):
    result = run_group(command, timeout, merge_output=True, env=env, cwd=cwd)
    return result.returncode, result.stdout


def check_world_of_four(output, servers):
    reports = re.findall(r"rank (\d) of 4 local (\d) backend ps secret (\w+) sum ([0-9.]+) servers (\d) (.*)", output)
    assert sorted(int(rank) for rank, *_ in reports) == [0, 1, 2, 3], output
    for rank, local, secret, total, connections, counts in reports:
        assert int(local) == int(rank) % 2 and secret == "True" and float(total) == 1 + 2 + 3 + 4, output
        assert int(connections) == servers and counts == str([2] * (servers - 1)), output  # 4 of 0.6 MB, 2 each


@pytest.mark.timeout(150)
@pytest.mark.parametrize("servers", [1, 2])
def test_ps_cluster_script_starts_one_launcher_per_host_with_a_shared_secret(tmp_path, servers):
    """SERVERS=2: node 0 runs server 1 too, at PORT+1, and every node's ranks use both."""
    fake_ssh = tmp_path / "bin" / "ssh"
    fake_ssh.parent.mkdir()
    fake_ssh.write_text('#!/usr/bin/env bash\nshift\nexec bash -c "$1"\n')  # "ssh HOST COMMAND": run COMMAND here
    fake_ssh.chmod(0o755)
    (tmp_path / "script.py").write_text(SCRIPT)
    secret_file = tmp_path / "secret" / "ps_secret"
    env = dict(os.environ, PATH=f"{fake_ssh.parent}{os.pathsep}{os.environ['PATH']}", HOSTS="127.0.0.1 127.0.0.1",
               PORT=str(free_port()), SECRET_FILE=str(secret_file), PYTHON=sys.executable, PYTHONPATH=REPO,
               SERVERS=str(servers), PARTITION_MB="1")
    code, output = run(["bash", os.path.join(REPO, "launchers", "ps_cluster.sh"), "2", "script.py"], env, tmp_path)
    assert code == 0, output
    check_world_of_four(output, servers)
    assert secret_file.stat().st_mode & 0o777 == 0o600  # created private on first use


ASYNC_SCRIPT = textwrap.dedent("""
    import numpy as np
    import distrain
    import distrain.distributed as dist
    from distrain import nn
    from distrain.parallel import DistributedDataParallel
    comm = dist.init(timeout=30)
    distrain.manual_seed(0)
    model = DistributedDataParallel(nn.Linear(300, 1000))  # 1.2 MB of parameters: shards on both servers
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)
    for step in range(4):
        optimizer.zero_grad()
        model(distrain.randn(2, 300)).pow(2).mean().backward()
        optimizer.step()
    served = model._served
    print("rank", comm.rank, "mode", comm.ps_mode, "bound", served.staleness, "steps", served.steps, "servers",
          sorted({shard[3] for shard in served.shards.values()}), flush=True)
    dist.shutdown()
""")


@pytest.mark.timeout(150)
def test_ps_cluster_script_trains_asynchronously_on_every_node(tmp_path):
    """PS_MODE=async STALENESS=2 reaches every node's launcher: each rank of the world of 4 trains through the
    servers (shards on both of SERVERS=2) with a bound of 2."""
    fake_ssh = tmp_path / "bin" / "ssh"
    fake_ssh.parent.mkdir()
    fake_ssh.write_text('#!/usr/bin/env bash\nshift\nexec bash -c "$1"\n')
    fake_ssh.chmod(0o755)
    (tmp_path / "script.py").write_text(ASYNC_SCRIPT)
    env = dict(os.environ, PATH=f"{fake_ssh.parent}{os.pathsep}{os.environ['PATH']}", HOSTS="127.0.0.1 127.0.0.1",
               PORT=str(free_port()), SECRET_FILE=str(tmp_path / "secret" / "ps_secret"), PYTHON=sys.executable,
               PYTHONPATH=REPO, SERVERS="2", PARTITION_MB="0.5", PS_MODE="async", STALENESS="2")
    code, output = run(["bash", os.path.join(REPO, "launchers", "ps_cluster.sh"), "2", "script.py"], env, tmp_path)
    assert code == 0, output
    reports = re.findall(r"rank (\d) mode (\w+) bound (\d+) steps (\d+) servers \[0, 1\]", output)
    assert sorted(rank for rank, *_ in reports) == ["0", "1", "2", "3"], output
    assert all(mode == "async" and bound == "2" and steps == "4" for _, mode, bound, steps in reports), output


@pytest.mark.timeout(150)
def test_a_node_beyond_loopback_needs_the_secret(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("DISTRAIN_PS_SECRET", None)
    code, output = run([sys.executable, "-m", "distrain.launch", "-n", "1", "--backend", "ps", "--nnodes", "2",
                        "--server", f"tcp://192.0.2.1:{free_port()}", "script.py"], env, tmp_path, timeout=60)
    assert code == 2 and "without authentication" in output and "DISTRAIN_PS_SECRET" in output, output


@pytest.mark.parametrize("arguments, message", [
    (["--nnodes", "2"], "need --server"),
    (["--nnodes", "2", "--node-rank", "2", "--server", "tcp://127.0.0.1:1"], "--node-rank 2 is outside 0..1"),
    (["--nnodes", "2", "--backend", "mpi"], "--nnodes is for --backend ps or nccl"),
])
def test_bad_node_options_are_usage_errors(tmp_path, arguments, message):
    arguments = (["--backend", "ps"] if "--backend" not in arguments else []) + arguments
    code, output = run([sys.executable, "-m", "distrain.launch", "-n", "1", *arguments, "x.py"],
                       dict(os.environ, PYTHONPATH=REPO), tmp_path, timeout=60)
    assert code == 2 and message in output, output
