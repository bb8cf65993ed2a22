"""A rank that ends early ends the whole job within 10 s, and one line names it (issue 10).

Rank 1 of 3 ends while the others wait for it in a barrier whose timeout (60 s) is far
beyond the test's limit, by an exception, `sys.exit(2)`, `sys.exit(0)`, `os._exit(3)`,
SIGKILL or SIGTERM to itself (ending_script.py); so does rank 0, which hosts the liveness
hub, by `sys.exit(0)` (its goodbye must still reach the others). Under each way of starting a job:
`python -m distrain.launch -n 3` with the mpi and the ps backend, and a plain `mpiexec -n 3
python -m distrain.launch`. Each run checks against what the ranks themselves printed (their
pids, host, the moment the rank ended, the /dev/shm files they mapped):

- the launcher exits within 10 s of the ending, and no rank (nor, under MPI, its
  supervisor) is left;
- the launcher's exit code is the rank's (128+n for signal n) — except under a plain
  mpiexec, whose code is its own;
- exactly one "distrain.launch: rank R (pid P on HOST) ..." line, naming the right rank, its
  real pid and host and how it ended, with "its traceback is above" only when a traceback
  was printed; a rank that calls `sys.exit(0)` early leaves the others waiting for nothing,
  so one of them fails (code 1) naming that rank and "exited with code 0";
- under MPI, none of the /dev/shm files the ranks had mapped survives the job.

Also: under the MPI launcher, output stays whole lines (partial writes and carriage-return
updates of two ranks never mix within a line).

On the code before issue 10 these fail: sys.exit(2) and sys.exit(0) waited out the
collective timeout, signals gave exit code 9 (mpi) or 137 (ps) without naming the rank, the
verdict claimed a traceback where there was none, and unsupervised ranks' partial writes
interleaved under mpiexec (checked by running with DISTRAIN_SUPERVISED=1, which skips the
supervisor).
"""
import os
import re
import signal
import sys
import textwrap
import time

import pytest

from ..comm.test_mpi import mpiexec
from . import test_spawn
from .test_spawn import launcher_command, still_running

launches = test_spawn.launches  # the fixture: launchers in their own sessions, killed with their ranks at teardown

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ending_script.py")
RANKS = 3
WITHIN_SECONDS = 10  # the promise: the whole job ends within this long after a rank ends
LAUNCHERS = ["mpi", "ps", "mpiexec"]

# how the rank ends -> (its exit code, as the launcher reports it; how the verdict says it ended; whether a
# traceback is printed). "exit0" is apart: the rank succeeds, the ranks left waiting for it fail (code 1), and the
# one verdict line names the rank that left, as their lost-peer errors do.
ENDINGS = {
    "raise": (1, "exited with code 1", True),
    "exit2": (2, "exited with code 2", False),
    "osexit3": (3, "exited with code 3", False),
    "sigkill": (128 + signal.SIGKILL, "was killed by signal SIGKILL", False),
    "sigterm": (128 + signal.SIGTERM, "was killed by signal SIGTERM", False),
    "exit0": (1, "exited with code 0 (sys.exit), and the ranks waiting for it could not go on (rank {waiter}'s "
              "traceback is above)", False),
}
VERDICT = re.compile(r"distrain\.launch: rank (\d+) \(pid (\d+) on ([^)\s]+)\) (.*)$", re.MULTILINE)


def command_for(launcher, how, ender):
    """The argv that starts ending_script.py on RANKS ranks: -n with mpi or ps, or a plain mpiexec."""
    if launcher == "mpiexec":
        return [mpiexec(), "-n", str(RANKS), sys.executable, "-m", "distrain.launch", SCRIPT, how, str(ender)]
    flags = ["--backend", "ps"] if launcher == "ps" else []
    return launcher_command(SCRIPT, RANKS, *flags, args=[how, str(ender)])


class Report:
    """What the ranks of one ending_script.py run printed about themselves."""

    def __init__(self, output):
        self.pids = {int(r): int(p) for r, p in re.findall(r"ready (\d+) (\d+)$", output, re.MULTILINE)}
        self.hosts, self.parents, self.shared_memory = {}, {}, set()
        for rank, host, parent, paths in re.findall(r"about (\d+) (\S+) (\d+)(.*)$", output, re.MULTILINE):
            self.hosts[int(rank)], self.parents[int(rank)] = host, int(parent)
            self.shared_memory.update(paths.split())
        endings = re.findall(r"ending (\d+\.\d+)$", output, re.MULTILINE)
        assert sorted(self.pids) == sorted(self.hosts) == list(range(RANKS)) and len(endings) == 1, output
        self.ended_at = float(endings[0])

    def names(self, rank):
        return f"rank {rank} (pid {self.pids[rank]} on {self.hosts[rank]})"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ender, how", [(1, how) for how in ENDINGS] + [(0, "exit0")],
                         ids=[f"rank1-{how}" for how in ENDINGS] + ["rank0-exit0"])
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_rank_that_ends_early_ends_the_job_within_seconds_and_is_named(launches, launcher, ender, how):
    launch = launches(command_for(launcher, how, ender))
    launch.wait_until_ready(RANKS)
    code = launch.wait(40)
    exited_at = time.time()
    output = launch.finish_reading()
    assert code is not None, f"the job still runs 40 s after rank {ender} ended:\n{output}"
    report = Report(output)
    seconds = exited_at - report.ended_at
    assert seconds < WITHIN_SECONDS, f"the launcher exited {seconds:.1f} s after rank {ender} ended:\n{output}"
    processes = [*report.pids.values(), *(report.parents.values() if launcher != "ps" else ())]  # ps: the launcher
    left = still_running(processes, max(0.5, report.ended_at + WITHIN_SECONDS - time.time()))
    assert left == [], f"processes {left} of the job still run {WITHIN_SECONDS} s after rank {ender} ended:\n{output}"

    expected_code, ending, traceback = ENDINGS[how]
    if launcher == "mpiexec":
        assert code != 0, output  # a plain mpiexec reports its own code; the verdict line carries the rank's
    else:
        assert code == expected_code, output
    verdicts = VERDICT.findall(output)
    assert len(verdicts) == 1, f"expected one verdict line, got {verdicts}:\n{output}"
    rank, pid, host, tail = verdicts[0]
    rank = int(rank)
    assert rank == ender and (int(pid), host) == (report.pids[rank], report.hosts[rank]), (verdicts, output)
    waiters = [r for r in range(RANKS) if r != ender]
    expected_tails = [ending.format(waiter=waiter) + ("; its traceback is above" if traceback else "")
                      for waiter in (waiters if how == "exit0" else [None])]
    if launcher == "ps":  # the ps launcher stops the others itself and says so
        # the ranks it stopped: all but the ender and the rank that failed first (after sys.exit(0), a waiting rank;
        # the other waiting rank may have failed in the same instant, and then none is left to stop)
        allowed = [f"; stopped rank(s) {[r for r in waiters if r != failed]}" for failed in
                   (waiters if how == "exit0" else [None])] + ([""] if how == "exit0" else [])
        assert any(tail == expected + stopped for expected in expected_tails for stopped in allowed), (tail, output)
    else:
        assert tail in expected_tails, (tail, output)
    if how == "exit0" and launcher != "ps":  # under MPI the lowest rank still running reports it
        assert tail == expected_tails[0], (tail, output)
    tracebacks = output.count("Traceback (most recent call last)")
    if how == "exit0":
        assert tracebacks >= 1 and f"{report.names(ender)} exited with code 0" in output, output
    else:
        assert tracebacks == (1 if traceback else 0), output
    if how == "raise":
        assert "ValueError: rank one cannot go on" in output, output

    if launcher != "ps":
        assert report.shared_memory, f"MPICH mapped no /dev/shm file: nothing to check\n{output}"
        left_behind = sorted(path for path in report.shared_memory if os.path.exists(path))
        assert left_behind == [], f"the job left {left_behind} in /dev/shm"


# -- whole lines ----------------------------------------------------------------------------------------------------

PIECES = 25


def pieces_of(rank):
    """What rank `rank` writes in the whole-lines test, each a line or a carriage-return update."""
    pieces = []
    for i in range(PIECES):
        pieces += [f"r{rank}-begin{i}-r{rank}-end{i}\n", f"r{rank}-progress{i}%\r"]
    return pieces


@pytest.mark.timeout(60)
def test_partial_writes_and_carriage_return_updates_of_two_ranks_stay_whole_lines(tmp_path, launches):
    script = tmp_path / "pieces.py"
    script.write_text(textwrap.dedent("""
        import os, time
        rank = int(os.environ["RANK"])
        time.sleep(0.2)  # both ranks start writing at about the same time
        for i in range(%d):
            os.write(1, f"r{rank}-begin{i}-".encode())  # half a line: the other rank writes meanwhile
            time.sleep(0.01)
            os.write(1, f"r{rank}-end{i}\\n".encode())
            os.write(1, f"r{rank}-progress{i}%%\\r".encode())  # a tqdm-style update
            time.sleep(0.007)
    """ % PIECES))
    launch = launches(launcher_command(script, 2))  # read as bytes: a carriage return stays one
    code = launch.wait(50)
    stdout = launch.finish_reading()
    assert code == 0, stdout
    by_rank = {0: [], 1: []}
    for piece in re.findall(r"[^\r\n]*(?:\r\n|\n|\r)", stdout):
        match = re.fullmatch(r"\[(\d)\] (r(\d)-[^\r\n]*[\r\n])", piece)
        assert match and match.group(1) == match.group(3), f"a piece with another rank's text: {piece!r}\n{stdout!r}"
        by_rank[int(match.group(1))].append(match.group(2))
    assert by_rank == {rank: pieces_of(rank) for rank in (0, 1)}, stdout


# -- the rank meant to name a lost peer is busy ---------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_the_launcher_names_a_lost_rank_when_the_rank_meant_to_report_it_is_busy_elsewhere(tmp_path, launches):
    """Rank 2 leaves with code 0; rank 1 fails waiting for it and stays quiet, since rank 0, the lowest rank still
    running, is the one to report; but rank 0 is busy outside any collective and never fails. The quiet rank's
    supervisor prints the line after its grace (before: only "mpiexec exited with code 9", naming no rank)."""
    script = tmp_path / "busy_reporter.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        import distrain.distributed as dist
        comm = dist.init(timeout=60)
        comm.barrier()
        print("ready", comm.rank, os.getpid(), flush=True)
        if comm.rank == 2:
            time.sleep(0.5)
            sys.exit(0)
        if comm.rank == 0:
            time.sleep(30)  # local work (a checkpoint, an evaluation): the job is torn down before it ends
        comm.barrier()
    """))
    launch = launches(launcher_command(script, 3))
    pids = dict(enumerate(launch.wait_until_ready(3)))
    code = launch.wait(25)
    output = launch.finish_reading()
    assert code == 1, output
    verdicts = VERDICT.findall(output)
    assert len(verdicts) == 1, (verdicts, output)
    rank, pid, _, tail = verdicts[0]
    assert int(rank) == 2 and int(pid) in pids.values(), output
    assert tail == ("exited with code 0 (sys.exit), and the ranks waiting for it could not go on (rank 1's traceback "
                    "is above)"), output
