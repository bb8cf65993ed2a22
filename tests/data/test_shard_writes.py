"""write_shards(overwrite=True) replaces a dataset in one step, and cleans up after killed writers.

A reader process polls the dataset's path while it is overwritten again and again: it must
never find the path (or its index.json) missing. Writers killed mid-write leave a hidden
temporary directory; the next write to the same path removes it, but never a running
writer's (NOTE [ Temporary names and dead writers ] in distrain/durable.py).
"""
import os
import signal
import textwrap

import numpy as np
import pytest

from distrain.data import ShardDataset, write_shards
from distrain.data.directory_swap import exchange
from distrain.durable import host_token

from .processes import REPO, kill_group, read_until_started, start_script


def _hidden(parent):
    return sorted(name for name in os.listdir(parent) if name.startswith("."))


POLLER = textwrap.dedent("""
    import os
    exists, index, stop = os.path.exists, {index!r}, {stop!r}
    looks = missing = 0
    print("started", flush=True)
    while not exists(stop):
        for _ in range(1000):
            missing += not exists(index)
        looks += 1000
    print("looks:", looks, flush=True)
    print("missing:", missing, flush=True)
""")


@pytest.mark.timeout(120)
def test_an_overwrite_never_leaves_the_path_missing(tmp_path):
    """The reader is a process, not a thread: a thread would share the writer's GIL and could only
    look while the writer sits in a system call, so it does not see the old code's gap between
    its two renames; a process does (about 200 times in 150 overwrites on 2 cores)."""
    path = tmp_path / "ds"
    write_shards(path, {"x": np.zeros(8, np.int64)}, samples_per_shard=4)
    stop = tmp_path / "stop"
    reader = start_script(tmp_path / "poll.py", POLLER.format(index=str(path / "index.json"), stop=str(stop)))
    try:
        read_until_started(reader)
        for version in range(1, 151):
            write_shards(path, {"x": np.full(8, version, np.int64)}, samples_per_shard=4, overwrite=True)
        stop.touch()
        output, _ = reader.communicate(timeout=30)
    finally:
        kill_group(reader)
    counts = {line.split(":")[0]: int(line.split(":")[1]) for line in output.decode().splitlines() if ":" in line}
    assert counts["looks"] > 1000, "the reader did look"
    assert counts["missing"] == 0, f"the dataset was missing at {counts['missing']} of {counts['looks']} looks"
    np.testing.assert_array_equal(ShardDataset(path, verify="full").get_batch(range(8))["x"], np.full(8, 150))
    assert _hidden(tmp_path) == [], "the replaced datasets are deleted"


def test_after_every_rename_of_an_overwrite_the_path_holds_a_whole_dataset(tmp_path, monkeypatch):
    """The same promise, checked at each step rather than by chance: the moment a rename returns."""
    path = tmp_path / "ds"
    write_shards(path, {"x": np.zeros(8, np.int64)}, samples_per_shard=4)
    rename, seen = os.rename, []

    def observed_rename(source, destination):
        try:
            rename(source, destination)
        finally:
            seen.append(len(ShardDataset(path, verify="full")) if os.path.exists(path / "index.json") else None)

    monkeypatch.setattr(os, "rename", observed_rename)
    write_shards(path, {"x": np.ones(5, np.int64)}, samples_per_shard=4, overwrite=True)
    monkeypatch.undo()
    assert seen and None not in seen, f"dataset sizes after each rename: {seen}"
    assert len(ShardDataset(path, verify="full")) == 5


def test_exchange_swaps_two_directories(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from-a").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "from-b").write_text("b")
    assert exchange(tmp_path / "a", tmp_path / "b"), "this Linux file system exchanges atomically"
    assert os.listdir(tmp_path / "a") == ["from-b"] and os.listdir(tmp_path / "b") == ["from-a"]
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "a", tmp_path / "missing")


WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from distrain.data import write_shards

    def samples():
        for i in range(1000):
            if i == 6:  # two shards are on disk in the temporary directory: stop here, mid-write
                print("started", flush=True)
                time.sleep(1000)
            yield {{"x": np.int64(i)}}

    write_shards({path!r}, samples(), samples_per_shard=3, overwrite=True)
""")


@pytest.mark.timeout(60)
def test_the_next_write_removes_a_killed_writers_temporary_directory_but_not_a_running_ones(tmp_path):
    path = tmp_path / "ds"
    write_shards(path, {"x": np.arange(4)})
    killed = start_script(tmp_path / "killed.py", WRITER.format(repo=REPO, path=str(path)))
    running = start_script(tmp_path / "running.py", WRITER.format(repo=REPO, path=str(path)))
    try:
        read_until_started(killed)
        read_until_started(running)
        leftovers = _hidden(tmp_path)
        assert len(leftovers) == 2 and all(name.endswith(".tmp") for name in leftovers)
        killed_dir = next(name for name in leftovers if f".{killed.pid}." in name)
        running_dir = next(name for name in leftovers if f".{running.pid}." in name)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        assert os.path.isdir(tmp_path / killed_dir), "a killed writer leaves its temporary directory"

        write_shards(path, {"x": np.arange(5)}, overwrite=True)

        assert _hidden(tmp_path) == [running_dir], "only the dead writer's leftover is removed"
        assert sorted(os.listdir(tmp_path / running_dir)) == ["shard-00000.x.npy", "shard-00001.x.npy"]
        assert len(ShardDataset(path, verify="full")) == 5
    finally:
        kill_group(killed)
        kill_group(running)
    write_shards(path, {"x": np.arange(6)}, overwrite=True)
    assert _hidden(tmp_path) == [], "once its writer is dead, the next write removes it too"


def test_leftovers_of_other_datasets_and_other_hosts_are_left_alone(tmp_path):
    dead_pid = _a_dead_pid()
    here = host_token()
    others = [f".other.{here}.{dead_pid}.0123abcd.tmp",            # another dataset's
              f".ds.{here}-elsewhere.{dead_pid}.0123abcd.tmp",     # written from another machine
              ".ds.notes.tmp"]                                     # not a writer's name at all
    for name in others:
        (tmp_path / name).mkdir()
    write_shards(tmp_path / "ds", {"x": np.arange(4)})
    assert _hidden(tmp_path) == sorted(others)


def _a_dead_pid():
    import subprocess
    import sys

    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                             check=True, timeout=60)
    return int(process.stdout)
