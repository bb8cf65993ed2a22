"""`python -m distrain.launch`: rank discovery and command lines (pure functions), and real runs under mpiexec."""
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from tests.process_group import run_group

from distrain.launch import discover_ranks, mpiexec_command, rank_environment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("environ, expected", [
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, (3, 8, 1)),
    ({"PMI_RANK": "2", "PMI_SIZE": "4", "MPI_LOCALRANKID": "0"}, (2, 4, 0)),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "1"}, (5, 6, 1)),
    ({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2, 1)),
    ({}, (0, 1, 0)),
])
def test_ranks_come_from_the_launchers_environment(environ, expected):
    assert discover_ranks(environ) == expected


def test_rank_environment_uses_pytorchs_names_and_distrains():
    assert rank_environment(1, 4, 1) == {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "DISTRAIN_RANK": "1",
                                         "DISTRAIN_WORLD_SIZE": "4", "DISTRAIN_LOCAL_RANK": "1"}


def test_mpiexec_command_is_an_argv_list_with_the_script_arguments_untouched():
    command = mpiexec_command("/x/mpiexec", 3, ["train.py", "--lr", "0.1 0.2"], python="/py")
    assert command == ["/x/mpiexec", "-n", "3", "-prepend-rank", "/py", "-m", "distrain.launch", "train.py", "--lr",
                       "0.1 0.2"]
    assert "-prepend-rank" not in mpiexec_command("m", 2, [], prefix=False)


def launch(tmp_path, body, ranks, *arguments, timeout=120):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.monotonic()
    result = run_group([sys.executable, "-m", "distrain.launch", "-n", str(ranks), str(script), *arguments], timeout,
                       merge_output=True, env=env)
    return result.returncode, result.stdout, time.monotonic() - start


@pytest.mark.timeout(150)
def test_each_rank_runs_the_script_as_main_with_its_arguments_and_rank_variables(tmp_path):
    code, output, _ = launch(tmp_path, """
        import os, sys
        if __name__ == "__main__":
            line = " ".join(["report", os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["DISTRAIN_LOCAL_RANK"],
                             *sys.argv[1:]])
            print(line, flush=True)
    """, 3, "--epochs", "2")
    assert code == 0, output
    reports = sorted(re.findall(r"report (\d) 3 (\d) --epochs 2", output))
    assert [rank for rank, _ in reports] == ["0", "1", "2"], output
    assert re.search(r"\[\d\] report", output), "output lines carry their rank"


@pytest.mark.timeout(150)
def test_a_failing_rank_stops_the_job_quickly_and_is_named(tmp_path):
    code, output, seconds = launch(tmp_path, """
        import os, time
        import distrain.distributed as dist
        comm = dist.init()
        if comm.rank == 1:
            raise ValueError("rank one cannot go on")
        comm.barrier()  # the others would wait here forever without the abort
        time.sleep(60)
    """, 2)
    assert code != 0
    assert "rank 1 failed" in output and "ValueError: rank one cannot go on" in output, output
    assert seconds < 30


def run_example(arguments, cwd, timeout=240):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return run_group([sys.executable, "-m", "distrain.launch", "-n", "2", *arguments], timeout, env=env, cwd=cwd)


@pytest.mark.timeout(300)
def test_ddp_digits_example_trains_on_two_ranks(tmp_path):
    result = run_example([os.path.join(REPO, "examples", "ddp_digits.py"), "--data", str(tmp_path / "digits"),
                          "--epochs", "4"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    accuracy = float(re.search(r"test accuracy: ([0-9.]+) \(2 ranks\)", result.stdout).group(1))
    assert accuracy > 0.9, result.stdout


@pytest.mark.timeout(300)
def test_custom_loop_example_keeps_ranks_in_step_and_learns_the_weights(tmp_path):
    result = run_example([os.path.join(REPO, "examples", "custom_loop.py")], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    learned = [float(v) for v in re.search(r"learned\S*\s+\[([^\]]+)\]", result.stdout).group(1).split(",")]
    assert learned == pytest.approx([2.0, -3.0, 0.5], abs=0.01), result.stdout


@pytest.mark.timeout(300)
def test_the_mpirun_launcher_script_runs_an_example(tmp_path):
    launcher = os.path.join(REPO, "launchers", "mpirun.sh")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHON=sys.executable,
               MPIEXEC=os.path.join(os.path.dirname(sys.executable), "mpiexec"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(["bash", launcher, "2", os.path.join(REPO, "examples", "custom_loop.py")],
                            capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path, start_new_session=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "learned" in result.stdout


@pytest.mark.parametrize("name", ["mpirun.sh", "slurm.sbatch", "single_node_multi_gpu.sh", "ps_cluster.sh"])
def test_launcher_scripts_are_valid_bash_and_explain_their_usage(name):
    path = os.path.join(REPO, "launchers", name)
    assert subprocess.run(["bash", "-n", path], capture_output=True).returncode == 0
    with open(path) as script:
        text = script.read()
    assert "python -m distrain.launch" in text or "-m distrain.launch" in text
    assert text.splitlines()[1].startswith("# ")  # a comment saying what it is for, right after the shebang


def test_single_gpu_launcher_without_gpus_says_so(tmp_path):
    env = dict(os.environ, PATH="/usr/bin:/bin", NUM_GPUS="0")
    result = subprocess.run(["bash", os.path.join(REPO, "launchers", "single_node_multi_gpu.sh"), "x.py"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 1 and "no GPU found" in result.stderr


@pytest.mark.timeout(200)
@pytest.mark.parametrize("flags", [["--nproc_per_node", "2"], ["--nproc-per-node", "2", "--standalone"],
                                   ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", "0"]])
def test_torchruns_flags_start_the_ranks(tmp_path, flags):
    """`python -m distrain.launch --nproc_per_node 2 train.py`, as torchrun users type it (mpi backend)."""
    script = tmp_path / "script.py"
    script.write_text("import os\nprint('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])\n")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = run_group([sys.executable, "-m", "distrain.launch", *flags, str(script)], 120, merge_output=True, env=env)
    assert result.returncode == 0, result.stdout
    assert sorted(re.findall(r"rank (\d) of (\d)", result.stdout)) == [("0", "2"), ("1", "2")], result.stdout


@pytest.mark.timeout(200)
def test_torchruns_master_address_is_the_parameter_servers(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "script.py"
    script.write_text("import os\nprint('server', os.environ['DISTRAIN_PS_ADDRESS'])\n")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = run_group([sys.executable, "-m", "distrain.launch", "--nproc_per_node", "2", "--backend", "ps",
                        "--node_rank", "0", "--master_addr", "127.0.0.1", "--master_port", str(port), str(script)],
                       120, merge_output=True, env=env)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count(f"server tcp://127.0.0.1:{port}") == 2, result.stdout
    lone = run_group([sys.executable, "-m", "distrain.launch", "--master_addr", "h", str(script)], 60, env=env)
    assert lone.returncode == 2 and "--master-addr and --master-port go together" in lone.stderr
