"""distrain.multiprocessing.spawn / start_processes keep torch.multiprocessing's promises.

Each scenario runs tests/multiprocessing/spawn_script.py in a process group of its own (killed on a
timeout). Before distrain.multiprocessing existed, `import distrain.multiprocessing` failed: every test here
failed at the script's first line.
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import distrain.multiprocessing as mp
from distrain.errors import ArgumentError
from distrain.process_lifetime import process_is_running
from tests.compat.twins import environment
from tests.process_group import run_group

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawn_script.py")


def scenario(name, directory):
    result = run_group([sys.executable, SCRIPT, name, str(directory)], timeout=120, env=environment())
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):]), result.stderr


def children(directory):
    """{index: what child `index` wrote}, for the children that have written."""
    written = {}
    for name in os.listdir(directory):
        if name.startswith("child-") and not name.endswith(".partial"):
            with open(os.path.join(directory, name)) as handle:
                written[int(name.split("-")[1])] = handle.read()
    return written


def test_reexports_pythons_multiprocessing():
    import multiprocessing

    import distrain

    assert distrain.multiprocessing is mp  # `torch.multiprocessing.spawn(...)` after `import distrain as torch`

    for name in ("Process", "Queue", "SimpleQueue", "Pool", "Lock", "Barrier", "Event", "Manager", "get_context",
                 "set_start_method", "get_start_method", "cpu_count", "current_process"):
        assert getattr(mp, name) == getattr(multiprocessing, name), name
        assert name in mp.__all__
    assert mp.get_all_sharing_strategies() == {"file_descriptor", "file_system"}


def test_every_child_runs_fn_with_its_index_and_spawn_returns_none(tmp_path):
    result, _ = scenario("return", tmp_path)
    assert result["returned"] is None
    seen = {index: json.loads(text) for index, text in children(tmp_path).items()}
    assert {index: entry["value"] for index, entry in seen.items()} == {0: 0, 1: 10, 2: 20}
    assert len({entry["pid"] for entry in seen.values()}) == 3


def test_children_get_a_fresh_job_secret_when_none_is_set(tmp_path):
    """For the launcher-less rendezvous: one secret, the same in every child and the parent's environment."""
    result, _ = scenario("return", tmp_path)
    secrets = {json.loads(text)["secret"] for text in children(tmp_path).values()}
    assert secrets == {result["parent_secret"]}
    assert re.fullmatch(r"[0-9a-f]{64}", result["parent_secret"])
    other, _ = scenario("return", tmp_path)
    assert other["parent_secret"] != result["parent_secret"]  # fresh per job


def test_a_given_job_secret_is_kept(tmp_path):
    result, _ = scenario("given_secret", tmp_path)
    assert {json.loads(text)["secret"] for text in children(tmp_path).values()} == {"given-secret-0123456789abcdef"}


def test_a_child_exception_is_raised_in_the_parent_with_its_traceback_and_index(tmp_path):
    result, _ = scenario("raise", tmp_path)
    raised = result["raised"]
    assert raised["type"] == "ProcessRaisedException" and raised["is_process_exception"]
    assert raised["index"] == 1
    assert "Process 1" in raised["message"] and f"pid {raised['pid']}" in raised["message"]
    assert "Traceback (most recent call last)" in raised["message"]
    assert "in raise_in_one" in raised["message"] and "ValueError: boom from child 1" in raised["message"]
    survivors = [int(pid) for index, pid in children(tmp_path).items()]
    assert len(survivors) == 2 and not any(process_is_running(pid) for pid in survivors)
    assert result["seconds"] < 60  # the others were terminated, not waited for (they sleep 120 s)


def test_a_child_killed_by_a_signal_is_named(tmp_path):
    raised = scenario("signal", tmp_path)[0]["raised"]
    assert raised["type"] == "ProcessExitedException"
    assert (raised["index"], raised["signal_name"], raised["exit_code"]) == (0, "SIGKILL", -signal.SIGKILL)
    assert raised["message"] == f"process 0 (pid {raised['pid']}) terminated with signal SIGKILL"


def test_a_child_exiting_with_a_nonzero_status_is_named(tmp_path):
    raised = scenario("exit", tmp_path)[0]["raised"]
    assert raised["type"] == "ProcessExitedException"
    assert (raised["index"], raised["signal_name"], raised["exit_code"]) == (0, None, 3)
    assert raised["message"] == f"process 0 (pid {raised['pid']}) terminated with exit code 3"


def test_join_false_returns_a_context_to_join_with_a_timeout(tmp_path):
    result, _ = scenario("no_join", tmp_path)
    assert result["processes"] == 3 and len(set(result["pids"])) == 3
    assert result["first_join"] is False  # the children sleep 3 s
    assert result["joins_until_done"] >= 1 and result["again"] is True
    assert {json.loads(text)["pid"] for text in children(tmp_path).values()} == set(result["pids"])


@pytest.mark.parametrize("scenario_name", ["die_with_parent", "die_with_parent_from_thread"])
def test_children_die_with_the_parent(tmp_path, scenario_name):
    parent = subprocess.Popen([sys.executable, SCRIPT, scenario_name, str(tmp_path)], start_new_session=True,
                              env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(children(tmp_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(pid) for pid in children(tmp_path).values()]
        assert len(pids) == 2, "the children did not start within 60 s"
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(process_is_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(process_is_running(pid) for pid in pids), "children outlived their parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_bad_arguments_are_refused():
    with pytest.raises(ArgumentError, match="nprocs must be a positive int"):
        mp.start_processes(print, nprocs=0)
    with pytest.raises(ArgumentError, match="start_method 'thread' is not available"):
        mp.start_processes(print, start_method="thread")
    with pytest.raises(ArgumentError, match="unknown sharing strategy"):
        mp.set_sharing_strategy("cuda_ipc")


def _nothing(index):
    """A child's fn that returns at once."""


@pytest.mark.timeout(60)
def test_the_error_directory_goes_with_a_context_never_joined():
    """join=False and the caller never joins: the directory for the children's tracebacks is not left in /tmp."""
    context = mp.start_processes(_nothing, nprocs=2, join=False, start_method="fork")
    directory = os.path.dirname(context.error_files[0])
    assert os.path.isdir(directory)
    for process in context.processes:
        process.join(30)
    del context, process
    import gc

    gc.collect()
    assert not os.path.exists(directory)
    joined = mp.start_processes(_nothing, nprocs=1, join=False, start_method="fork")
    directory = os.path.dirname(joined.error_files[0])
    while not joined.join(30):
        pass
    assert not os.path.exists(directory)
