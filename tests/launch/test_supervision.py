"""What a rank's supervisor (distrain/supervision.py) removes from /dev/shm after the rank is killed.

A killed rank cannot unlink the shared-memory segments that its MPI library and its data
loader made, so its supervisor does. But a rank also maps files in /dev/shm that are not
its own: a data set kept on the RAM disk for speed (np.load(mmap_mode="r"), shard files),
another program's segment. Those must survive the rank's failure. On the code before
this test, every /dev/shm file the rank had mapped was unlinked, the user's data set too.
"""
import io
import os
import secrets
import signal
import subprocess
import sys
import textwrap

import pytest

from distrain.supervision import OutputRelay, SharedMemoryWatch

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self") or not os.path.isdir("/dev/shm"),
                                reason="needs Linux's /proc and /dev/shm")

MAP_AND_WAIT = textwrap.dedent("""
    import mmap, sys, time
    maps = []
    for path in sys.argv[1:]:
        with open(path, "r+b") as handle:
            maps.append(mmap.mmap(handle.fileno(), 0))
    print("mapped", flush=True)
    time.sleep(60)
""")


@pytest.mark.timeout(30)
def test_a_killed_ranks_segments_are_removed_and_files_it_only_mapped_are_kept():
    token = secrets.token_hex(4)
    user_directory = f"/dev/shm/review-data-{token}"
    os.mkdir(user_directory)
    own = [f"/dev/shm/mpich_shm_{token}_0", f"/dev/shm/distrain_{os.getpid()}_{token}_1"]  # MPICH's, the loader's
    users = [f"/dev/shm/dataset_{token}.npy", f"{user_directory}/train.npy"]  # a data set on the RAM disk
    for path in own + users:
        with open(path, "wb") as handle:
            handle.write(b"\0" * 4096)
    child = subprocess.Popen([sys.executable, "-c", MAP_AND_WAIT, *own, *users], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"mapped\n"
        watch = SharedMemoryWatch(child.pid)
        watch.scan()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        removed = watch.remove_leftovers()
        assert sorted(removed) == sorted(own)
        assert [path for path in own if os.path.exists(path)] == []
        assert [path for path in users if not os.path.exists(path)] == [], "a file the rank only mapped was removed"
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
        for path in own + users:
            if os.path.exists(path):
                os.unlink(path)
        os.rmdir(user_directory)



@pytest.mark.timeout(30)
@pytest.mark.parametrize("stream_type", [io.StringIO, io.BytesIO], ids=["text", "binary"])
def test_output_goes_whole_to_a_stream_without_a_file_descriptor(stream_type):
    """The launcher run in-process with its output captured (pytest's capsys, a notebook): pieces still arrive whole.

    Before, a stream whose fileno() raises (io.StringIO's io.UnsupportedOperation) made the relay fail at once.
    """
    read_end, write_end = os.pipe()
    stream = stream_type()
    with open(read_end, "rb") as pipe:
        relay = OutputRelay(pipe, stream, prefix=b"[3] ")
        relay.start()
        os.write(write_end, b"first line\nhalf a ")
        os.write(write_end, b"line\nprogress 50%\rno newline at the end")
        os.close(write_end)
        relay.join(10)
    assert not relay.is_alive()
    expected = "[3] first line\n[3] half a line\n[3] progress 50%\r[3] no newline at the end\n"
    assert stream.getvalue() == (expected if stream_type is io.StringIO else expected.encode())


def test_the_rank_to_report_a_lost_peer_is_the_lowest_that_did_not_start_it():
    """Rank 1 left; ranks 0 and 2 fail waiting for it. Rank 2 may hear of rank 0's failure first: rank 0 still
    reports (its goodbye says it failed only because of a lost peer), rank 2 stays quiet, and both name rank 1."""
    from distrain.comm.base import PeerLostError
    from distrain.supervision import LOST_PEER_ERROR, note_for_lost_peer

    assert PeerLostError.__name__ == LOST_PEER_ERROR
    left = {"rank": 1, "pid": 11, "host": "n1", "lost": "exited with code 0 (sys.exit)", "lost_at": 100.0}
    consequence = {"rank": 0, "pid": 10, "host": "n0", "lost": f"raised {LOST_PEER_ERROR}: rank 0: ...",
                   "lost_at": 101.0}
    kinds = {rank: note_for_lost_peer(rank, lost).split("\t") for rank, lost in
             ((0, {1: left}), (2, {1: left, 0: consequence}), (3, {1: left}))}
    assert [kinds[rank][0] for rank in (0, 2, 3)] == ["report", "quiet", "quiet"]
    for rank in (0, 2, 3):
        assert kinds[rank][1].startswith("distrain.launch: rank 1 (pid 11 on n1) exited with code 0 (sys.exit), "), kinds
