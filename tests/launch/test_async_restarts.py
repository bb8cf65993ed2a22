"""The launcher's asynchronous parameter-server jobs, whose ranks and servers may fail and come back (NOTE
[ Restarting a rank ] in distrain/spawn.py, ps_servers.py), run for real on async_restarts_script.py.

- `--max-restarts 1`: a rank that crashes is started again, rejoins and finishes; the launcher says so and exits 0.
  Without it the crashed rank is left out, the other finishes, and the launcher exits with the rank's code.
- `--servers 2 --ps-checkpoint-dir D --max-restarts 1`: server 1's process, killed with SIGKILL, is started again
  from D/server-1.ckpt; the ranks connect to it again, go on from their clocks in that checkpoint, and finish.
- The flags that do not fit a job are usage errors (exit code 2), in-process.

Each launcher runs in a session of its own, killed on failure; its ranks and servers die with it.
"""
import os
import re
import signal
import subprocess
import sys

import pytest

import distrain
from distrain.comm.ps import modes
from distrain.launch import main as launch_main

from tests.comm.test_ps import wait_until
from tests.process_group import run_group

from .test_spawn import ENV

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "async_restarts_script.py")
STEPS = 6
MODE_VARIABLES = (modes.MODE_ENVIRONMENT_VARIABLE, modes.STALENESS_ENVIRONMENT_VARIABLE,
                  modes.DAMPING_ENVIRONMENT_VARIABLE)


def launcher_command(tmp_path, *flags, steps=STEPS, script_args=()):
    marks = tmp_path / "marks"
    marks.mkdir()
    return [sys.executable, "-m", "distrain.launch", "-n", "2", "--backend", "ps", "--ps-mode", "async", *flags,
            SCRIPT, str(steps), str(marks), *script_args]


def reports(stdout):
    """{(rank, life): [(step, [clock per shard], reconnected)]} from the ranks' "[r] rank R life L step S ..." lines."""
    found = {}
    for rank, life, step, clocks, reconnected in re.findall(
            r"^\[\d\] rank (\d) life (\d) step (\d+) clocks ([\d ]+) reconnected (\d)$", stdout, re.MULTILINE):
        found.setdefault((int(rank), int(life)), []).append(
            (int(step), [int(clock) for clock in clocks.split()], int(reconnected)))
    return found


def steps_of(report):
    return [step for step, _, _ in report]


@pytest.mark.timeout(60)
def test_max_restarts_starts_a_crashed_rank_again_and_it_rejoins_and_finishes(tmp_path):
    result = run_group(launcher_command(tmp_path, "--max-restarts", "1", script_args=["--crash-rank", "1"]),
                       timeout=45, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^distrain\.launch: rank 1 \(pid \d+\) ended with code 7; restarting it \(1 of 1 restarts\)$",
                     result.stderr, re.MULTILINE), result.stderr
    found = reports(result.stdout)
    assert sorted(found) == [(0, 1), (1, 1), (1, 2)], result.stdout
    assert steps_of(found[0, 1]) == steps_of(found[1, 2]) == list(range(1, STEPS + 1)), result.stdout
    assert steps_of(found[1, 1]) == [1, 2]  # its first process crashed at its third step
    first = found[1, 2][0][1][0]
    assert first >= 3, found[1, 2]  # the restarted rank went on from the job's clock (2 or more), not from 0
    assert [clocks for _, clocks, _ in found[1, 2]] == [[first + step] for step in range(STEPS)]


@pytest.mark.timeout(60)
def test_without_restarts_a_crashed_rank_is_left_out_and_the_launcher_exits_with_its_code(tmp_path):
    result = run_group(launcher_command(tmp_path, script_args=["--crash-rank", "1"]), timeout=45, env=ENV)
    assert result.returncode == 7, result.stdout + result.stderr
    assert "distrain.launch: rank 1 ended with code 7 and is not restarted; the asynchronous job goes on without " \
           "it\n" in result.stderr, result.stderr
    assert result.stderr.endswith("distrain.launch: the asynchronous job ended without rank 1, which failed with "
                                  "code 7\n"), result.stderr
    found = reports(result.stdout)
    assert sorted(found) == [(0, 1), (1, 1)] and steps_of(found[1, 1]) == [1, 2], result.stdout
    assert [clocks for _, clocks, _ in found[0, 1]] == [[step] for step in range(1, STEPS + 1)]  # rank 0 finished


def server_processes(launcher_pid):
    """{pid: argv} of the parameter-server processes that the launcher `launcher_pid` started."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                argv = cmdline.read().decode().split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == launcher_pid and argv[1:3] == ["-m", "distrain.comm.ps.server"]:
            found[int(name)] = argv
    return found


@pytest.mark.timeout(60)
def test_a_killed_server_process_is_restarted_from_its_checkpoint_and_the_ranks_finish(tmp_path):
    directory, go, steps, pause = tmp_path / "checkpoints", tmp_path / "go", 8, 6
    checkpoint = directory / "server-1.ckpt"
    command = launcher_command(tmp_path, "--servers", "2", "--partition-mb", "0.0005", "--ps-checkpoint-dir",
                               str(directory), "--ps-checkpoint-every", "4", "--max-restarts", "1", steps=steps,
                               script_args=["--pause-at", str(pause), str(go)])  # 195 parameters: a shard on each
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                                start_new_session=True)
    try:
        lines = []
        while sum(f" step {pause} " in line for line in lines) < 2:  # both ranks paused: 6 updates on each server
            lines.append(launcher.stdout.readline())
            assert lines[-1], "".join(lines)
        wait_until(checkpoint.exists, timeout=10, what=f"{checkpoint}")  # at 4 updates; the next is due at 8
        (pid, argv), = server_processes(launcher.pid).items()
        assert argv[argv.index("--checkpoint") + 1] == str(checkpoint)
        os.kill(pid, signal.SIGKILL)
        (state,) = distrain.load(str(checkpoint))["shards"]  # the launcher's restarted server reads it too
        saved = {rank: clock for rank, clock in state["clock"]}
        # K = 0: a round of both ranks' pushes is one update; due at 4 (5 if the server took round 5 in first)
        assert state["version"] in (4, 5) and saved == {0: state["version"], 1: state["version"]}, state
        go.touch()
        stdout, stderr = launcher.communicate(timeout=45)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    assert launcher.returncode == 0, "".join(lines) + stdout + stderr
    address = re.escape(re.search(r"parameter server 1 at (\S+) ", stderr).group(1))
    assert re.search(rf"^distrain\.launch: parameter server 1 at {address} \(pid {pid}\) was killed by signal SIGKILL; "
                     rf"restarting it from its checkpoint {re.escape(str(checkpoint))}$", stderr, re.MULTILINE), stderr
    assert f"resumed 1 served shard(s) from {checkpoint} (versions [{state['version']}])" in stderr, stderr
    found = reports("".join(lines) + stdout)
    assert sorted(found) == [(0, 1), (1, 1)], stdout
    for rank in (0, 1):
        # server 0's shard kept every push; server 1's went on from this rank's clock in its checkpoint (its steps
        # 5 and 6 lost and redone), once it was connected to again, at the step after the pause
        expected = [(step, [step, step if step <= pause else saved[rank] + step - pause], int(step == pause + 1))
                    for step in range(1, steps + 1)]
        assert found[rank, 1] == expected, (rank, saved, found[rank, 1])


@pytest.mark.parametrize("flags, message", [
    (["--backend", "ps", "--max-restarts", "1"], "--max-restarts restarts a failed rank of an asynchronous "
                                                 "parameter-server job (--backend ps --ps-mode async)"),
    (["--backend", "ps", "--ps-mode", "sync", "--ps-checkpoint-dir", "checkpoints"],
     "--ps-checkpoint-dir and --ps-checkpoint-every are for --ps-mode async"),
    (["--backend", "ps", "--ps-checkpoint-every", "10"], "--ps-checkpoint-dir and --ps-checkpoint-every are for "
                                                         "--ps-mode async"),
    (["--backend", "ps", "--ps-mode", "async", "--ps-checkpoint-dir", "checkpoints", "--ps-checkpoint-every", "0"],
     "--ps-checkpoint-every must be at least 1 update, got 0"),
    (["--backend", "ps", "--ps-mode", "async", "--max-restarts", "-1"], "--max-restarts must be 0 or more, got -1"),
])
def test_restart_and_checkpoint_flags_that_do_not_fit_the_job_are_usage_errors(flags, message, capsys, monkeypatch,
                                                                              tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in MODE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as stopped:
        launch_main(["-n", "2", *flags, "train.py"])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # nothing started, no checkpoint directory made
    assert not any(name in os.environ for name in MODE_VARIABLES)  # nor the ranks' mode handed on
