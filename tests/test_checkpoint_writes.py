"""Saving a checkpoint to a path: atomic replacement, what a failed or killed save leaves behind.

A save either replaces the checkpoint whole or leaves the previous one as it was; an error
from the operating system (a full disk) is a CheckpointWriteError naming the file; and the
temporary files that killed savers leave are removed by the next save to the same path,
but only when their writer is dead.
"""
import errno
import io
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import distrain
from distrain import durable
from distrain.errors import CheckpointError, CheckpointWriteError

from .test_checkpoint import assert_identical, sample_state

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def temporary_name_pattern(pid=r"\d+"):
    return rf"\.ckpt\.dt\.{re.escape(HOST)}\.{pid}\.[0-9a-f]{{8}}\.tmp"


def test_a_successful_save_leaves_only_the_checkpoint_and_syncs_file_and_directory(tmp_path, monkeypatch):
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.path.isdir(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda src, dst: replaced.append(src) or real_replace(src, dst))
    path = tmp_path / "ckpt.dt"
    distrain.save(sample_state(), path)
    distrain.save(sample_state(), path)  # over an existing checkpoint too
    assert os.listdir(tmp_path) == ["ckpt.dt"]
    assert [os.path.dirname(source) for source in replaced] == [str(tmp_path)] * 2
    assert all(re.fullmatch(temporary_name_pattern(os.getpid()), os.path.basename(source)) for source in replaced)
    if sys.platform.startswith("linux"):
        assert synced == [False, True, False, True]  # the temporary file, then the directory, per save


def test_an_unsupported_value_deep_in_the_tree_leaves_the_old_checkpoint_untouched(tmp_path):
    path = tmp_path / "ckpt.dt"
    distrain.save(sample_state(), path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"'model.layers.3.extra'"):
        distrain.save({"model": {"layers": [distrain.ones(2)] * 3 + [{"extra": object()}]}}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.dt"]


def test_too_deep_a_tree_is_refused_before_anything_is_written(tmp_path):
    deep = leaf = {}
    for _ in range(distrain.checkpoint.MAX_NESTING + 5):
        leaf["next"] = leaf = {}
    with pytest.raises(TypeError, match=r"nest more than 100 deep"):
        distrain.save(deep, tmp_path / "ckpt.dt")
    assert os.listdir(tmp_path) == []
    within = leaf = {}
    for _ in range(distrain.checkpoint.MAX_NESTING - 1):
        leaf["next"] = leaf = {}
    assert distrain.load(io.BytesIO(save_bytes(within))) == within


def save_bytes(obj):
    buffer = io.BytesIO()
    distrain.save(obj, buffer)
    return buffer.getvalue()


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


class FillsUp:
    """A file that takes the first 1000 bytes written to it, then reports a full disk."""

    def __init__(self, file):
        self.file = file

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.file.close()

    def writelines(self, chunks):
        for chunk in chunks:
            self.write(chunk)

    def write(self, data):
        room = 1000 - self.file.tell()
        if len(data) > room:
            self.file.write(bytes(data)[:max(room, 0)])
            full_disk()
        return self.file.write(data)


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_full_disk_is_a_checkpoint_error_naming_the_file_and_the_old_checkpoint_survives(tmp_path, monkeypatch,
                                                                                            failing):
    """ENOSPC from the file's write, its fsync or the rename: a CheckpointWriteError (also an
    OSError with errno ENOSPC) naming the path; no temporary file stays; the old checkpoint loads."""
    path = tmp_path / "ckpt.dt"
    distrain.save(sample_state(), path)
    before = path.read_bytes()
    if failing == "write":
        # the file is opened by durable.replace_file, which distrain.save writes through
        monkeypatch.setattr(distrain.durable, "open", lambda *args: FillsUp(open(*args)), raising=False)
    else:
        monkeypatch.setattr(os, failing, full_disk)
    with pytest.raises(CheckpointError) as caught:
        distrain.save({"new": distrain.zeros(100_000)}, path)
    monkeypatch.undo()
    error = caught.value
    assert isinstance(error, CheckpointWriteError) and isinstance(error, OSError) and error.errno == errno.ENOSPC
    message = str(error)
    assert str(path) in message and "No space left on device" in message and "unchanged" in message, message
    assert error.filename == str(path)
    assert os.listdir(tmp_path) == ["ckpt.dt"] and path.read_bytes() == before
    assert_identical(distrain.load(path), sample_state())


def test_a_full_disk_while_saving_to_a_file_object_names_it():
    class FullStream(io.RawIOBase):
        name = "/mnt/full/stream.dt"

        def writable(self):
            return True

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointWriteError, match=r"checkpoint /mnt/full/stream.dt: No space left on device") as caught:
        distrain.save(sample_state(), FullStream())
    assert caught.value.errno == errno.ENOSPC


FILE_SIZE_LIMITED_SAVE = r"""
import resource, signal, sys
import numpy, distrain
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so an over-long write fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    distrain.save({"big": numpy.zeros(100_000)}, sys.argv[1])
except distrain.CheckpointError as error:
    print(type(error).__name__, error.errno, error, sep="|")
"""


def test_a_real_write_refused_by_the_kernel_is_a_checkpoint_write_error(tmp_path):
    """No monkeypatching: a file-size limit makes the kernel refuse the write (EFBIG)."""
    path = tmp_path / "ckpt.dt"
    distrain.save(sample_state(), path)
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMITED_SAVE, str(path)], capture_output=True, text=True,
                            env=env, timeout=120)
    kind, code, message = result.stdout.strip().split("|")
    assert (kind, int(code)) == ("CheckpointWriteError", errno.EFBIG) and str(path) in message, result
    assert os.listdir(tmp_path) == ["ckpt.dt"]
    assert_identical(distrain.load(path), sample_state())


@pytest.mark.parametrize("failing, exception", [("replace", PermissionError(13, "Permission denied")),
                                                ("fsync", KeyboardInterrupt())])
def test_a_save_failing_mid_write_removes_its_temporary_file(tmp_path, monkeypatch, failing, exception):
    path = tmp_path / "ckpt.dt"
    distrain.save(sample_state(), path)
    before = path.read_bytes()

    def fail(*args):
        raise exception
    monkeypatch.setattr(os, failing, fail)
    expected = CheckpointWriteError if isinstance(exception, OSError) else type(exception)
    with pytest.raises(expected):
        distrain.save({"new": distrain.zeros(1000)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.dt"] and path.read_bytes() == before
    assert_identical(distrain.load(path), sample_state())


# ----------------------------------------------------------------------------- temporaries of killed savers

def dead_pid():
    """The pid of a process that has exited and been reaped (so no process has it, for now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def leave_temporary(path, pid, host=HOST):
    name = f".{path.name}.{host}.{pid}.{random.Random(pid).randbytes(4).hex()}.tmp"
    (path.parent / name).write_bytes(b"half a checkpoint")
    return name


def test_the_next_save_removes_a_dead_savers_temporary_and_keeps_a_live_ones(tmp_path):
    path = tmp_path / "ckpt.dt"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = leave_temporary(path, dead_pid())
        alive = leave_temporary(path, live.pid)
        mine = leave_temporary(path, os.getpid())  # this process may be saving on another thread
        elsewhere = leave_temporary(path, dead_pid(), host="another-machine")  # a shared file system: cannot tell
        other_target = f".other.dt.{HOST}.{dead_pid()}.0123abcd.tmp"
        (tmp_path / other_target).write_bytes(b"another checkpoint's temporary")
        distrain.save(sample_state(), path)
        assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.dt", alive, mine, elsewhere, other_target])
        assert dead not in os.listdir(tmp_path)
        assert_identical(distrain.load(path), sample_state())
    finally:
        live.kill()
        live.wait(timeout=30)
    distrain.save(sample_state(), path)  # now that writer is dead too
    assert alive not in os.listdir(tmp_path)


def test_a_temporary_directory_of_a_dead_writer_is_removed_too(tmp_path):
    """durable.remove_dead_temporaries serves shard datasets too, whose temporaries are directories."""
    target = tmp_path / "dataset"
    leftover = tmp_path / f".dataset.{HOST}.{dead_pid()}.00ff00ff.tmp"
    (leftover / "shard_0").mkdir(parents=True)
    (leftover / "shard_0" / "x.npy").write_bytes(b"\x93NUMPY")
    assert durable.remove_dead_temporaries(target) == [str(leftover)]
    assert not leftover.exists()


def test_temporary_names_record_host_and_pid(tmp_path):
    name = os.path.basename(durable.temporary_path(tmp_path / "ckpt.dt"))
    assert re.fullmatch(temporary_name_pattern(os.getpid()), name), name


KILLED_SAVER = r"""
import sys
import numpy
import distrain

path, size = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
counter = int(sys.stdin.readline())
while True:
    counter += 1
    weights = numpy.arange(size, dtype=numpy.float32) + counter
    distrain.save({"counter": counter, "weights": distrain.from_numpy(weights), "log": (counter, [str(counter)] * 3)},
                  path)
"""


def read_line(process, timeout):
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"saver process {process.pid} said nothing within {timeout} s"
    return process.stdout.readline()


def test_a_saver_killed_at_random_moments_always_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL a process that saves 4 MB checkpoints in a loop, 24 times at seeded random delays.

    Each replacement saver is started a round ahead, so its import overlaps the previous
    saver's run; after every kill the checkpoint must load, be self-consistent, and never
    go back to an older counter. The temporary file a kill leaves is gone once the next
    saver has saved: at the end at most the last kill's is left.
    """
    path, size = tmp_path / "ckpt.dt", 1 << 20
    distrain.save({"counter": 0, "weights": distrain.from_numpy(np.arange(size, dtype=np.float32)),
                   "log": (0, ["0"] * 3)}, path)
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    delays = random.Random(20240611)
    processes = []

    def start_saver():
        process = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(path), str(size)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT, start_new_session=True)
        processes.append(process)
        return process

    last_counter, expected_weights, kills_mid_save = 0, np.arange(size, dtype=np.float32), 0
    try:
        waiting = start_saver()
        for _ in range(24):
            saver, waiting = waiting, start_saver()
            assert read_line(saver, timeout=60) == b"ready\n"
            saver.stdin.write(f"{last_counter}\n".encode())
            saver.stdin.flush()
            time.sleep(delays.uniform(0.0, 0.1))
            os.killpg(saver.pid, signal.SIGKILL)
            assert saver.wait(timeout=10) == -signal.SIGKILL
            leftovers = sorted(set(os.listdir(tmp_path)) - {"ckpt.dt"})
            assert all(re.fullmatch(temporary_name_pattern(), name) for name in leftovers), leftovers
            assert len(leftovers) <= 2, f"dead savers' temporaries pile up: {leftovers}"
            kills_mid_save += any(f".{saver.pid}." in name for name in leftovers)
            loaded = distrain.load(path)
            counter = loaded["counter"]
            assert counter >= last_counter and loaded["log"] == (counter, [str(counter)] * 3)
            np.testing.assert_array_equal(loaded["weights"].numpy(), expected_weights + counter)
            last_counter = counter
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            process.stdin.close()
            process.stdout.close()
    assert kills_mid_save, "no kill landed during a save, so the test proved nothing"
    assert last_counter > 0, "no save ever completed between kills"
    distrain.save({"counter": -1}, path)
    assert os.listdir(tmp_path) == ["ckpt.dt"]


def test_saving_into_a_missing_directory_names_the_directory(tmp_path):
    target = tmp_path / "missing" / "ckpt.dt"
    with pytest.raises(FileNotFoundError, match="directory .*missing does not exist"):
        distrain.save({"a": 1}, target)
