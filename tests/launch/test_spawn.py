"""`python -m distrain.launch -n N --backend ps`: the launcher starting the ranks itself (spawn.py), run for real.

Every run is a real launcher process in its own session: a timeout kills its process group, and
every rank pid a test learns is killed at teardown if it is still there, so a hang fails the test
instead of stalling the suite or leaving ranks behind. The pure pieces (choose_backend,
worker_environment, describe_ending, _select_gpu, the argument checks) are tested in-process.
"""
import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.process_group import run_group

import distrain.distributed
from distrain.distributed import choose_backend
from distrain.launch import _select_gpu
from distrain.launch import main as launch_main
from distrain.spawn import worker_environment
from distrain.supervision import describe_ending

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMM_TESTS = os.path.join(REPO, "tests", "comm")
ENV = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

# ranks that print "ready RANK PID" once all are up, then wait: rank 0 in a barrier that the others never join,
# the others asleep; what a job stuck mid-training looks like to the launcher
WAITING_RANKS = """
    import os, sys, time
    import distrain.distributed as dist
    comm = dist.init(timeout=60)
    comm.barrier()  # every rank is up
    print("ready", comm.rank, os.getpid(), flush=True)
    if sys.argv[1:] == ["ignore-ctrl-c"] and comm.rank == 1:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # only SIGKILL after the grace stops this one
    if comm.rank == 0:
        comm.barrier()
    time.sleep(60)
"""


def launcher_command(script, count, *flags, args=()):
    return [sys.executable, "-m", "distrain.launch", "-n", str(count), *flags, str(script), *args]


def write_script(tmp_path, body, name="script.py"):
    script = tmp_path / name
    script.write_text(textwrap.dedent(body))
    return script


def run(command, timeout=60):
    """(exit code, stdout, stderr, seconds) of a launcher run to its end, its session killed on timeout."""
    start = time.monotonic()
    result = run_group(command, timeout, env=ENV)
    return result.returncode, result.stdout, result.stderr, time.monotonic() - start


def has_exited(pid):
    """True once `pid` is gone or a zombie (an orphan's zombie waits for init to reap it, seconds on some machines)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the pid now belongs to another user's process: ours has exited
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def still_running(pids, seconds):
    """The pids among `pids` that have not exited within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid in pids if not has_exited(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


class Launch:
    """A launcher started in the background, its merged stdout+stderr collected line by line by a thread."""

    def __init__(self, command):
        self.command = command
        self.script = next(part for part in command if part.endswith(".py"))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV,
                                        start_new_session=True)
        self.lines = []
        self.rank_pids = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in iter(self.process.stdout.readline, b""):
            self.lines.append(line.decode(errors="replace"))

    @property
    def output(self):
        return "".join(self.lines)

    def wait_until_ready(self, count, seconds=30):
        """The pids of the `count` ranks, once each has printed "ready RANK PID"; fails after `seconds`."""
        deadline = time.monotonic() + seconds
        while len(self.rank_pids) < count:
            for line in list(self.lines):
                match = re.search(r"ready (\d+) (\d+)$", line.strip())
                if match:
                    self.rank_pids[int(match.group(1))] = int(match.group(2))
            if time.monotonic() > deadline or (self.process.poll() is not None and len(self.rank_pids) < count):
                pytest.fail(f"only ranks {sorted(self.rank_pids)} of {count} became ready:\n{self.output}")
            time.sleep(0.05)
        return sorted(self.rank_pids.values())

    def wait(self, seconds):
        """The launcher's exit code, or None if it is still running after `seconds`."""
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def finish_reading(self, seconds=5):
        self._reader.join(timeout=seconds)  # whatever still holds the pipe (a leaked mpiexec) cannot block us
        return self.output

    def stop(self):
        """Teardown: kill the launcher's session and every rank of ours that is still running."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in self.rank_pids.values():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:  # still our rank, not a reused pid
                    ours = self.script in cmdline.read().decode(errors="replace").split("\0")
                if ours and not has_exited(pid):
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        self._reader.join(timeout=5)
        if not self._reader.is_alive():
            self.process.stdout.close()


@pytest.fixture
def launches():
    """Start launchers in the background; at teardown, stop them and their ranks.

    A pytest started with SIGINT ignored (`pytest &` in a script, some CI runners) would pass the ignoring on to
    the launcher and its ranks, and Ctrl-C could not reach them: while launchers start, SIGINT is handled here.
    """
    started = []
    previous_handler = signal.getsignal(signal.SIGINT)
    if previous_handler == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def start(command):
        started.append(Launch(command))
        return started[-1]

    yield start
    signal.signal(signal.SIGINT, previous_handler)
    for launch in started:
        launch.stop()


# -- the ranks and their output -------------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_every_rank_runs_the_script_as_main_with_its_arguments_and_rank_variables(tmp_path):
    script = write_script(tmp_path, """
        import os, sys
        names = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "DISTRAIN_RANK", "DISTRAIN_BACKEND"]
        print("report", __name__, *[os.environ[name] for name in names], repr(sys.argv[1:]), flush=True)
        print("server", os.environ["DISTRAIN_PS_ADDRESS"], "launcher", os.environ["DISTRAIN_LAUNCHER_PID"], flush=True)
        print("parent", os.getppid(), file=sys.stderr, flush=True)
    """)
    process = subprocess.Popen(launcher_command(script, 3, "--backend", "ps", args=["--epochs", "2", "a b"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, stdout + stderr
    reports = sorted(line for line in stdout.splitlines() if " report " in line)
    assert reports == [f"[{r}] report __main__ {r} 3 {r} 3 {r} ps ['--epochs', '2', 'a b']" for r in range(3)], stdout
    servers = set(re.findall(r"^\[\d\] server (\S+) launcher (\d+)$", stdout, re.MULTILINE))
    assert len(servers) == 1, stdout  # one rendezvous server for all ranks, on loopback
    address, launcher_pid = servers.pop()
    assert address.startswith("tcp://127.0.0.1:") and int(launcher_pid) == process.pid
    assert sorted(stderr.splitlines()) == [f"[{r}] parent {process.pid}" for r in range(3)], stderr


def lines_of(rank, stream):
    """What the interleaving test's rank `rank` writes to `stream`: long lines of several sizes, crossing PIPE_BUF."""
    return [f"{stream} {rank} {i} " + chr(ord("a") + (7 * rank + i) % 26) * (100 + 997 * i % 20000)
            for i in range(120)]


@pytest.mark.timeout(90)
def test_every_output_line_carries_its_rank_and_lines_never_interleave(tmp_path):
    script = write_script(tmp_path, "import os, sys\n" + inspect.getsource(lines_of) + textwrap.dedent("""
        rank = int(os.environ["RANK"])
        for out, err in zip(lines_of(rank, "out"), lines_of(rank, "err")):
            for stream, line in ((sys.stdout, out), (sys.stderr, err)):
                middle = len(line) // 2  # one line in two writes, flushed apart: still one output line
                stream.write(line[:middle]); stream.flush()
                stream.write(line[middle:] + "\\n"); stream.flush()
        sys.stdout.write(f"no newline at the end {rank}")
    """))
    code, stdout, stderr, _ = run(launcher_command(script, 3, "--backend", "ps"))
    assert code == 0, stderr[-3000:]
    for stream, text in (("out", stdout), ("err", stderr)):
        by_rank = {r: [] for r in range(3)}
        for line in text.splitlines():
            match = re.match(r"\[(\d)\] (.*)$", line)
            assert match, f"a {stream} line without its rank prefix: {line[:200]!r}"
            by_rank[int(match.group(1))].append(match.group(2))
        for rank, lines in by_rank.items():
            expected = lines_of(rank, stream) + ([f"no newline at the end {rank}"] if stream == "out" else [])
            assert len(lines) == len(expected), (stream, rank, len(lines))
            for got, want in zip(lines, expected):  # each line whole, and each rank's lines in order
                assert got == want, (stream, rank, got[:80], len(got), want[:80], len(want))


@pytest.mark.timeout(90)
def test_no_prefix_leaves_the_lines_as_the_ranks_wrote_them(tmp_path):
    script = write_script(tmp_path, """
        import os, sys
        print("plain", os.environ["RANK"])
        print("plain error", os.environ["RANK"], file=sys.stderr)
    """)
    code, stdout, stderr, _ = run(launcher_command(script, 2, "--backend", "ps", "--no-prefix"))
    assert code == 0, stderr
    assert sorted(stdout.splitlines()) == ["plain 0", "plain 1"]
    assert sorted(stderr.splitlines()) == ["plain error 0", "plain error 1"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["ps", "mpi"])
def test_rank0_only_shows_rank_zeros_stdout_and_every_ranks_stderr(tmp_path, backend):
    script = write_script(tmp_path, """
        import os, sys
        rank = os.environ["RANK"]
        print("out", rank, flush=True)
        os.write(1, f"c-level out {rank}\\n".encode())  # C's stdout is silenced too, not just Python's
        print("err", rank, file=sys.stderr, flush=True)
    """)
    flags = ["--rank0-only"] + (["--backend", backend] if backend != "mpi" else [])
    code, stdout, stderr, _ = run(launcher_command(script, 2, *flags))
    assert code == 0, stdout + stderr
    assert sorted(stdout.splitlines()) == ["[0] c-level out 0", "[0] out 0"], stdout
    assert {"[0] err 0", "[1] err 1"} <= set(stderr.splitlines()), stderr


# -- a failing rank -------------------------------------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("failure, ending, code", [
    ("raise", "exited with code 1; its traceback is above", 1),
    ("sigkill", "was killed by signal SIGKILL", 128 + signal.SIGKILL),
])
def test_a_failing_rank_stops_the_ranks_waiting_for_it_and_is_named(tmp_path, launches, failure, ending, code):
    script = write_script(tmp_path, """
        import os, signal, sys, time
        import distrain.distributed as dist
        comm = dist.init(timeout=60)
        comm.barrier()
        print("ready", comm.rank, os.getpid(), flush=True)
        if comm.rank != 1:
            comm.barrier()  # waits for rank 1 forever, but for the launcher
            raise AssertionError("the barrier completed without rank 1")
        time.sleep(0.5)  # let the others get into the barrier
        if sys.argv[1] == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ValueError("rank one cannot go on")
    """)
    launch = launches(launcher_command(script, 3, "--backend", "ps", args=[failure]))
    pids = launch.wait_until_ready(3)
    start = time.monotonic()
    assert launch.wait(25) == code, launch.output
    seconds = time.monotonic() - start
    output = launch.finish_reading()
    assert seconds < 10, f"the launcher took {seconds:.1f} s to stop the job"
    named = f"rank 1 (pid {launch.rank_pids[1]} on {socket.gethostname()})"
    verdict = f"distrain.launch: {named} {ending}; stopped rank(s) [0, 2]"
    assert verdict in output.splitlines(), output
    if failure == "raise":
        assert "[1] Traceback (most recent call last)" in output and "[1] ValueError: rank one cannot go on" in output
    assert still_running(pids, 5) == [], output


# -- Ctrl-C, SIGTERM, a killed launcher -----------------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_to_the_launcher_interrupts_every_rank_and_exits_130(tmp_path, launches, signum):
    launch = launches(launcher_command(write_script(tmp_path, WAITING_RANKS), 3, "--backend", "ps"))
    pids = launch.wait_until_ready(3)
    start = time.monotonic()
    os.kill(launch.process.pid, signum)  # the launcher alone, as a terminal's Ctrl-C or Slurm's SIGTERM reaches it
    assert launch.wait(10) == 130, launch.output
    seconds = time.monotonic() - start
    output = launch.finish_reading()
    assert seconds < 5, f"the launcher took {seconds:.1f} s to stop the ranks"
    assert "distrain.launch: interrupted; stopped all 3 ranks" in output, output
    for rank in range(3):  # each got SIGINT (a KeyboardInterrupt), not just the SIGKILL after the grace
        assert f"[{rank}] KeyboardInterrupt" in output, output
    assert still_running(pids, 5) == [], output


@pytest.mark.timeout(90)
def test_a_rank_that_ignores_ctrl_c_is_killed_after_the_grace(tmp_path, launches):
    from distrain.spawn import GRACE_SECONDS

    script = write_script(tmp_path, WAITING_RANKS)
    launch = launches(launcher_command(script, 2, "--backend", "ps", args=["ignore-ctrl-c"]))
    pids = launch.wait_until_ready(2)
    start = time.monotonic()
    os.kill(launch.process.pid, signal.SIGINT)
    assert launch.wait(GRACE_SECONDS + 10) == 130, launch.output
    seconds = time.monotonic() - start
    assert GRACE_SECONDS - 0.5 < seconds < GRACE_SECONDS + 5, seconds
    assert "interrupted" in launch.finish_reading()
    assert still_running(pids, 5) == [], launch.output


@pytest.mark.timeout(90)
def test_ranks_whose_launcher_was_killed_exit_on_their_own(tmp_path, launches):
    launch = launches(launcher_command(write_script(tmp_path, WAITING_RANKS), 2, "--backend", "ps"))
    pids = launch.wait_until_ready(2)
    os.kill(launch.process.pid, signal.SIGKILL)  # no chance to stop anything: the ranks' watchdog must
    launch.process.wait()
    assert still_running(pids, 3) == [], launch.finish_reading()


@pytest.mark.timeout(90)
def test_ctrl_c_to_the_mpi_launcher_stops_every_rank(tmp_path, launches):
    launch = launches(launcher_command(write_script(tmp_path, WAITING_RANKS), 2))  # default backend: mpiexec
    pids = launch.wait_until_ready(2)
    start = time.monotonic()
    os.kill(launch.process.pid, signal.SIGINT)
    code = launch.wait(20)
    seconds = time.monotonic() - start
    assert code not in (None, 0), launch.output
    assert seconds < 8, f"the launcher took {seconds:.1f} s to stop mpiexec"
    assert still_running(pids, 5) == [], launch.finish_reading()


@pytest.mark.timeout(90)
def test_sigterm_to_the_mpi_launcher_stops_every_rank(tmp_path, launches):
    """SIGTERM (timeout(1), kill, a job scheduler) to the launcher of an mpiexec job must not leave the job running:
    mpiexec is in its own session, so nothing but the launcher can pass the signal on."""
    launch = launches(launcher_command(write_script(tmp_path, WAITING_RANKS), 2))
    pids = launch.wait_until_ready(2)
    os.kill(launch.process.pid, signal.SIGTERM)
    code = launch.wait(20)
    assert code not in (None, 0), launch.output
    survivors = still_running(pids, 5)
    assert survivors == [], f"ranks {survivors} still run 5 s after the launcher exited with {code}"


# -- the MPI test scripts, unchanged, under the parameter server -------------------------------------------------------

def ranks_reporting_ok(stdout):
    reports = re.findall(r"^\[(\d+)\] rank (\d+) ok$", stdout, re.MULTILINE)
    assert all(prefix == rank for prefix, rank in reports), stdout
    return sorted(int(rank) for _, rank in reports)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("ranks", [2, 3])
def test_the_collectives_script_runs_under_the_parameter_server(ranks):
    script = os.path.join(COMM_TESTS, "mpi_collectives_script.py")
    code, stdout, stderr, _ = run(launcher_command(script, ranks, "--backend", "ps", args=[str(ranks)]))
    assert code == 0, stdout + stderr
    assert ranks_reporting_ok(stdout) == list(range(ranks))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_ddp_on_n_ranks_equals_one_process_under_the_parameter_server(ranks):
    script = os.path.join(COMM_TESTS, "ddp_script.py")
    code, stdout, stderr, _ = run(launcher_command(script, ranks, "--backend", "ps", args=[str(ranks)]), timeout=100)
    assert code == 0, stdout + stderr
    assert ranks_reporting_ok(stdout) == list(range(ranks))


# -- usage errors ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["-n", "0", "train.py"], "-n must be at least 1, got 0"),
    (["-n", "-2", "--backend", "ps", "train.py"], "-n must be at least 1, got -2"),
    (["-n", "2", "--backend", "gloo", "train.py"], "invalid choice: 'gloo'"),
])
def test_usage_errors_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_a_missing_script_fails_the_job_naming_the_script(tmp_path):
    missing = tmp_path / "no_such_train.py"
    code, _, stderr, seconds = run(launcher_command(missing, 2, "--backend", "ps"), timeout=40)
    assert code != 0
    assert f"no such script: {missing}" in stderr, stderr
    assert seconds < 20


# -- pure functions -------------------------------------------------------------------------------------------------

@pytest.fixture
def gpus(monkeypatch):
    """Set how many GPUs choose_backend sees (this machine may or may not have any)."""

    def set_count(count):
        monkeypatch.setattr(distrain.distributed, "cuda_device_count", lambda: count)

    set_count(0)
    return set_count


@pytest.mark.parametrize("environ, expected", [
    ({"DISTRAIN_BACKEND": "ps", "PMI_RANK": "0", "PMI_SIZE": "2"}, "ps"),  # the launcher's --backend wins
    ({"DISTRAIN_BACKEND": "local", "DISTRAIN_PS_ADDRESS": "tcp://127.0.0.1:5555"}, "local"),
    ({"PMI_RANK": "1", "PMI_SIZE": "2"}, "mpi"),
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4"}, "mpi"),
    ({"DISTRAIN_PS_ADDRESS": "tcp://127.0.0.1:5555", "RANK": "0", "WORLD_SIZE": "2"}, "ps"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "local"),  # rank variables alone name no backend
    ({}, "local"),
])
def test_choose_backend_without_gpus(environ, expected, gpus):
    assert choose_backend(environ) == expected


@pytest.mark.parametrize("environ, expected", [
    ({"PMI_RANK": "1", "PMI_SIZE": "2"}, "nccl"),
    ({"DISTRAIN_PS_ADDRESS": "tcp://127.0.0.1:5555", "RANK": "1", "WORLD_SIZE": "2"}, "nccl"),
    ({"PMI_RANK": "0", "PMI_SIZE": "1"}, "mpi"),  # one rank needs no NCCL
    ({"DISTRAIN_BACKEND": "ps", "PMI_RANK": "0", "PMI_SIZE": "2"}, "ps"),
    ({}, "local"),
])
def test_choose_backend_with_gpus(environ, expected, gpus):
    gpus(2)
    assert choose_backend(environ) == expected


def test_worker_environment_adds_the_rank_variables_to_the_base_one():
    env = worker_environment({"PATH": "/bin", "RANK": "7"}, 2, 4, "ps", "tcp://127.0.0.1:1234", rank0_only=True)
    assert env["PATH"] == "/bin"
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "DISTRAIN_BACKEND",
                                "DISTRAIN_PS_ADDRESS", "DISTRAIN_LAUNCHER_PID", "DISTRAIN_RANK0_ONLY")} == {
        "RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4", "DISTRAIN_BACKEND": "ps",
        "DISTRAIN_PS_ADDRESS": "tcp://127.0.0.1:1234", "DISTRAIN_LAUNCHER_PID": str(os.getpid()),
        "DISTRAIN_RANK0_ONLY": "1"}
    assert "DISTRAIN_RANK0_ONLY" not in worker_environment({}, 0, 1, "ps", "tcp://127.0.0.1:1")


def test_describe_ending_names_the_code_or_the_signal():
    assert describe_ending(3) == "exited with code 3"
    assert describe_ending(0) == "exited with code 0"
    assert describe_ending(-signal.SIGKILL) == "was killed by signal SIGKILL"
    assert describe_ending(-signal.SIGSEGV) == "was killed by signal SIGSEGV"


def test_select_gpu_uses_local_rank_modulo_the_gpu_count(monkeypatch):
    import importlib.util
    import types

    from distrain.engine import backend

    chosen = []
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda index: types.SimpleNamespace(use=lambda: chosen.append(index))))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: object() if name == "cupy" else real_find_spec(name, *args))
    monkeypatch.setattr(backend, "cupy_module", lambda: fake_cupy)
    monkeypatch.setattr(backend, "cuda_device_count", lambda: 2)
    _select_gpu(3)
    assert chosen == [1]
    monkeypatch.setattr(backend, "cuda_device_count", lambda: 0)
    _select_gpu(3)  # cupy without a GPU: nothing to select
    assert chosen == [1]


def test_ranks_ignore_an_outer_launchers_numbering():
    """Inside an sbatch/srun or mpirun allocation the launcher's own SLURM_/PMI_/OMPI_ numbering must not reach
    its ranks: they would read rank 0 of 1 from it instead of their RANK/WORLD_SIZE."""
    from distrain.launch import discover_ranks
    from distrain.spawn import worker_environment

    outer = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0", "PMI_RANK": "0", "PMI_SIZE": "1",
             "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1", "SLURM_JOB_ID": "42", "HOME": "/home/x"}
    env = worker_environment(outer, 3, 4, "ps", "tcp://127.0.0.1:1", local_rank=1, local_size=2)
    assert discover_ranks(env) == (3, 4, 1)
    assert env["SLURM_JOB_ID"] == "42" and env["HOME"] == "/home/x"  # the rest of the environment is kept


@pytest.mark.timeout(90)
def test_a_closed_output_pipe_does_not_hang_the_job(tmp_path):
    """`launch ... | head -1`: the launcher keeps draining its ranks' output, so they finish instead of blocking."""
    script = write_script(tmp_path, """
        for i in range(20000):
            print("line", i, "x" * 200)
    """)
    command = " ".join([sys.executable, "-m", "distrain.launch", "-n", "2", "--backend", "ps", str(script)])
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1"], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    assert result.stdout.startswith("[") and "line" in result.stdout, result.stdout + result.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in Linux's /proc")
def test_a_launch_whose_rank_cannot_start_leaves_no_descriptor_open(tmp_path):
    """run_workers in-process (as launch.main runs it): a rank that cannot be started (no such interpreter) raises,
    and the pipe through which that rank would have left its note is closed, both ends (before, 2 leaked per try)."""
    from distrain.spawn import run_workers

    def descriptors():
        return set(os.listdir("/proc/self/fd"))

    before = descriptors()
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            run_workers(1, "ps", [str(tmp_path / "train.py")], python=str(tmp_path / "no-such-python"))
    assert descriptors() - before == set()
