"""distrain.timeline: the Chrome-trace/Perfetto file of every rank's training step.

In-process runs check the file against the Trace Event Format (what chrome://tracing and
Perfetto's JSON importer need: a traceEvents list, "X" events with name/ph/ts/dur/pid/tid,
events of one row properly nested) and the bucket events against the reducer's own
buckets; launcher runs (mpi, ps) check the merged file of two ranks, each under a timeout
that kills its process group.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

from tests.process_group import run_group

import distrain
import distrain.distributed as dist
import distrain.parallel
from distrain import nn, timeline
from distrain.comm import LocalCommunicator
from distrain.comm.base import Handle
from distrain.parallel import DistributedDataParallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "timeline_ddp_script.py")
STEPS = 3


@pytest.fixture(autouse=True)
def no_timeline_left_behind(monkeypatch):
    """Each test starts with no current timeline and none from the environment, and leaves none."""
    monkeypatch.delenv(timeline.ENVIRONMENT_VARIABLE, raising=False)
    timeline.activate(None)
    yield
    timeline.finish_from_environment()
    timeline.activate(None)


def tiny_ddp(comm=None, compression=None):
    distrain.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)),
                                    comm=comm or LocalCommunicator(), bucket_cap_mb=0.0003,
                                    gradient_compression=compression)
    assert len(model._buckets) == 2
    return model, distrain.optim.SGD(model.parameters(), lr=0.1)


def train(model, optimizer, steps=STEPS, recorder=None):
    """A loop as a trainer writes it: every phase of the step in a span (of `recorder`, or none)."""
    span = recorder.span if recorder is not None else (lambda name, category: timeline.span(name, category))
    rng = np.random.default_rng(0)
    for _ in range(steps):
        with span("step", "step"):
            with span("data", "data"):
                x = distrain.tensor(rng.standard_normal((4, 5)).astype("float32"))
                y = distrain.tensor(rng.integers(0, 3, 4))
            with span("forward", "forward"):
                loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            with span("backward", "backward"):
                loss.backward()
            with span("optimizer", "optimizer"):
                optimizer.step()


def bucket_bytes(model, compression=None):
    """What each bucket sends, in closed form: its slice of the flat gradient, at 2 bytes per value for fp16."""
    return [(bucket["end"] - bucket["start"]) * (2 if compression == "fp16" else bucket["flat"].grad.itemsize)
            for bucket in model._buckets]


def load_trace(path):
    """The trace, checked against the Trace Event Format as Perfetto and chrome://tracing read it."""
    with open(path, encoding="utf-8") as file:
        trace = json.load(file)
    assert isinstance(trace["traceEvents"], list) and trace["displayTimeUnit"] == "ms"
    for event in trace["traceEvents"]:
        assert isinstance(event["pid"], int) and event["pid"] >= 1, event  # Perfetto treats pid 0 as the kernel's
        assert isinstance(event["tid"], int) and event["tid"] >= 0, event
        assert event["ph"] in ("X", "M", "i"), event
        if event["ph"] == "X":
            assert isinstance(event["name"], str) and event["name"], event
            assert isinstance(event["ts"], int) and isinstance(event["dur"], int) and event["dur"] >= 0, event
        elif event["ph"] == "M":
            assert event["name"] in ("process_name", "process_sort_index", "thread_name", "thread_sort_index")
    assert_rows_nest(trace["traceEvents"])
    return trace


def assert_rows_nest(events):
    """On every (pid, tid) row, any two X events are disjoint or one holds the other (what the viewers draw)."""
    rows = {}
    for event in events:
        if event["ph"] == "X":
            rows.setdefault((event["pid"], event["tid"]), []).append(event)
    for row, row_events in rows.items():
        open_ends = []
        for event in sorted(row_events, key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= event["ts"]:
                open_ends.pop()
            end = event["ts"] + event["dur"]
            assert not open_ends or end <= open_ends[-1], f"row {row}: {event} overlaps an event it is not inside"
            open_ends.append(end)


def named(events, pid=None, phase="X"):
    return [e for e in events if e["ph"] == phase and (pid is None or e["pid"] == pid)]


def row_names(events, pid):
    return {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
            and e["pid"] == pid}


@pytest.mark.parametrize("compression", [None, "fp16"])
def test_a_ddp_run_writes_one_trace_with_the_whole_step_and_one_event_per_bucket_per_step(tmp_path, compression):
    path = tmp_path / "trace.json"
    model, optimizer = tiny_ddp(compression=compression)
    before_us = time.time_ns() // 1000
    recorder = timeline.Timeline(path, 0, 1)
    timeline.activate(recorder)
    train(model, optimizer)
    recorder.close()
    assert timeline.current() is None  # closing stops the recording
    assert timeline.merge(path, 1, timeout=5) == []
    after_us = time.time_ns() // 1000
    assert os.listdir(tmp_path) == ["trace.json"]  # the part is gone
    events = load_trace(path)["traceEvents"]

    assert {(e["name"], e["args"]["name"]) for e in named(events, phase="M") if e["name"] == "process_name"} == {
        ("process_name", "rank 0")}
    rows = row_names(events, 1)
    main = [tid for tid, name in rows.items() if name == "main"]
    assert len(main) == 1
    spans = named(events)
    for name in ("step", "data", "forward", "backward", "optimizer", "wait for allreduce"):
        assert [e["tid"] for e in spans if e["name"] == name] == main * STEPS, name
    # the common clock: microseconds of the wall clock
    assert all(before_us <= e["ts"] and e["ts"] + e["dur"] <= after_us for e in spans)
    backwards = [e for e in spans if e["name"] == "backward"]
    for wait in (e for e in spans if e["name"] == "wait for allreduce"):
        assert any(b["ts"] <= wait["ts"] and wait["ts"] + wait["dur"] <= b["ts"] + b["dur"] for b in backwards)

    comm = [e for e in spans if e["cat"] == "comm" and e["name"] != "wait for allreduce"]
    assert {e["name"] for e in comm} == {"allreduce"}
    assert all(rows[e["tid"]].startswith("comm") for e in comm)
    expected = bucket_bytes(model, compression)
    assert sorted((e["args"]["bucket"], e["args"]["bytes"]) for e in comm) == sorted(
        (index, size) for index, size in enumerate(expected) for _ in range(STEPS))
    assert {e["args"]["backend"] for e in comm} == {"local"}
    assert {e["args"]["dtype"] for e in comm} == {"float16" if compression else "float32"}
    for step_event in (e for e in spans if e["name"] == "step"):  # every bucket of every step within its step
        inside = [e for e in comm if step_event["ts"] <= e["ts"] <= step_event["ts"] + step_event["dur"]]
        assert sorted(e["args"]["bucket"] for e in inside) == [0, 1]


class HeldHandle(Handle):
    """Completes only when waited for: every bucket of a step stays in flight until the end of backward."""

    def __init__(self):
        self.done = False

    def is_completed(self):
        return self.done

    def wait(self):
        time.sleep(0.002)
        self.done = True


class HeldCommunicator(LocalCommunicator):
    def allreduce_async(self, array, op="sum"):
        return HeldHandle()


def test_buckets_in_flight_together_get_comm_rows_of_their_own(tmp_path):
    """Overlapping (not nested) bucket events on one row would break the viewers' stacking."""
    path = tmp_path / "trace.json"
    model, optimizer = tiny_ddp(comm=HeldCommunicator())
    with timeline.Timeline(path, 0, 1) as recorder:
        timeline.activate(recorder)
        train(model, optimizer, recorder=recorder)
    timeline.merge(path, 1)
    events = load_trace(path)["traceEvents"]  # nesting holds on every row
    rows = row_names(events, 1)
    comm = [e for e in named(events) if e["name"] == "allreduce"]
    assert len(comm) == 2 * STEPS
    assert sorted({rows[e["tid"]] for e in comm}) == ["comm", "comm 2"]
    first, second = sorted(comm, key=lambda e: e["ts"])[:2]
    assert second["ts"] < first["ts"] + first["dur"] < second["ts"] + second["dur"]  # they really overlap


def test_rows_are_reused_once_free_and_spans_of_other_threads_get_their_own_row(tmp_path):
    path = tmp_path / "trace.json"
    recorder = timeline.Timeline(path, 0, 1)
    start = recorder.now_ns()
    recorder.complete("a", "comm", start, row="comm")
    recorder.complete("b", "comm", start, row="comm")  # began before a ended: a second row
    recorder.complete("c", "comm", recorder.now_ns(), row="comm")  # after both: the first row again
    thread = threading.Thread(target=lambda: recorder.span("load", "data").__enter__().__exit__(None, None, None),
                              name="loader")
    thread.start()
    thread.join()
    with pytest.raises(KeyError), recorder.span("failing", "eval"):
        raise KeyError("x")
    recorder.instant("epoch end")
    recorder.close()
    timeline.merge(path, 1)
    events = load_trace(path)["traceEvents"]
    rows = row_names(events, 1)
    where = {e["name"]: rows[e["tid"]] for e in events if e["ph"] in "Xi"}
    assert where == {"a": "comm", "b": "comm 2", "c": "comm", "load": "loader", "failing": "main", "epoch end": "main"}
    assert [e["args"] for e in events if e.get("name") == "failing"] == [{"error": "KeyError"}]


def test_with_no_timeline_the_reducer_checks_once_per_bucket_and_records_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checks = []

    def counting_current():
        checks.append(1)

    monkeypatch.setattr(distrain.gradient_reducer, "current_timeline", counting_current)
    monkeypatch.setattr(timeline.Timeline, "now_ns", lambda self: pytest.fail("the clock was read"))
    model, optimizer = tiny_ddp()
    train(model, optimizer)
    assert len(checks) == len(model._buckets) * STEPS
    assert model._reducer._bucket_events == {} and os.listdir(tmp_path) == []


def test_from_environment_records_dist_init_scripts_and_shutdown_merges(tmp_path, monkeypatch):
    path = tmp_path / "env-trace.json"
    monkeypatch.setenv(timeline.ENVIRONMENT_VARIABLE, str(path))
    comm = dist.init(backend="local")
    try:
        started = timeline.current()
        assert started is not None and started.path == str(path)
        assert timeline.from_environment(0, 1) is started  # one per process
        model, optimizer = tiny_ddp(comm=comm)
        train(model, optimizer)
    finally:
        dist.shutdown()
    assert timeline.current() is None and started.closed
    events = load_trace(path)["traceEvents"]
    comm_events = [e for e in named(events) if e["name"] == "allreduce"]
    assert sorted(e["args"]["bytes"] for e in comm_events) == sorted(bucket_bytes(model) * STEPS)
    assert [e["name"] for e in named(events) if e["name"] == "forward"] == ["forward"] * STEPS  # timeline.span
    assert os.listdir(tmp_path) == ["env-trace.json"]
    assert timeline.from_environment(0, 1, environ={}) is None


def test_a_timeline_path_that_cannot_be_written_is_named_and_init_stays_usable(tmp_path, monkeypatch):
    monkeypatch.setenv(timeline.ENVIRONMENT_VARIABLE, str(tmp_path / "no-such-dir" / "trace.json"))
    with pytest.raises(timeline.TimelineError, match=r"\$DISTRAIN_TIMELINE=.*no-such-dir.*rank0\.part"):
        dist.init(backend="local")
    assert not dist.is_initialized()
    with pytest.raises(distrain.errors.ArgumentError, match="rank 2 of world_size 2"):
        timeline.Timeline(tmp_path / "t.json", 2, 2)


def test_merge_waits_for_a_rank_still_closing_its_part(tmp_path):
    path = tmp_path / "trace.json"
    late = timeline.Timeline(path, 1, 2)
    with late.span("last step", "step"):
        pass
    with timeline.Timeline(path, 0, 2) as first, first.span("last step", "step"):
        pass
    closer = threading.Timer(0.3, late.close)
    closer.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unfinished part would warn
        assert timeline.merge(path, 2, timeout=20) == []
    closer.join()
    events = load_trace(path)["traceEvents"]
    assert sorted(e["pid"] for e in named(events)) == [1, 2]


CRASHING_RANK = """
    import os, sys
    from distrain import timeline
    recorder = timeline.Timeline(sys.argv[1], 1, 3)
    for step in range(600):
        with recorder.span("step", "step", {"step": step}):
            pass
    os._exit(1)  # killed: no close, no closing line
"""


def test_a_crashed_rank_leaves_its_part_and_merge_warns_naming_missing_and_unfinished_ranks(tmp_path):
    path = tmp_path / "trace.json"
    subprocess.run([sys.executable, "-c", textwrap.dedent(CRASHING_RANK), str(path)], timeout=60, check=False,
                   env=dict(os.environ, PYTHONPATH=REPO))
    part = timeline.part_path(path, 1)
    with open(part, "rb") as file:
        lines = file.read().splitlines()
    assert len(lines) >= 512 and b"distrain_timeline" not in lines[-1]  # flushed as it went, never closed
    with open(part, "ab") as file:
        file.write(b'{"name":"step","ph":"X","ts":17')  # the torn line of a rank killed mid-write
    with timeline.Timeline(path, 0, 3) as rank0, rank0.span("step", "step"):
        pass
    started = time.monotonic()
    with pytest.warns(timeline.TimelineWarning) as caught:
        assert timeline.merge(path, 3, timeout=0.5) == [1, 2]
    assert time.monotonic() - started < 10  # never hangs on a rank that is gone
    message = str(caught[0].message)
    assert re.search(r"rank 1's part has no closing line .* merged its \d+ whole events", message), message
    assert re.search(r"rank 2's part \S+ is missing", message), message
    trace = load_trace(path)
    assert trace["otherData"]["incomplete_ranks"] == [1, 2]
    crashed_steps = [e for e in named(trace["traceEvents"], pid=2) if e["name"] == "step"]
    assert len(crashed_steps) >= 500 and [e["args"]["step"] for e in crashed_steps] == list(range(len(crashed_steps)))
    assert len(named(trace["traceEvents"], pid=1)) == 1
    assert os.listdir(tmp_path) == ["trace.json"]


def launch(tmp_path, backend, *script_arguments, timeout=60):
    """`python -m distrain.launch -n 2 --backend BACKEND timeline_ddp_script.py ...` with $DISTRAIN_TIMELINE set."""
    path = tmp_path / "trace.json"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               DISTRAIN_TIMELINE=str(path))
    result = run_group([sys.executable, "-m", "distrain.launch", "-n", "2", "--backend", backend, SCRIPT, str(STEPS),
                        *script_arguments], timeout, merge_output=True, env=env, cwd=tmp_path)
    output = result.stdout
    assert result.returncode == 0, output
    assert "TimelineWarning" not in output, output
    return path, output


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend, operation, ending", [("mpi", "allreduce", "exit"), ("ps", "push/pull", "shutdown")])
def test_two_ranks_under_the_launcher_write_one_trace_with_both_ranks_comm(tmp_path, backend, operation, ending):
    """mpi: the script ends without shutdown() (the exit hook merges); ps: it calls dist.shutdown()."""
    path, output = launch(tmp_path, backend, *(["shutdown"] if ending == "shutdown" else []))
    sizes = {int(rank): json.loads(found) for rank, found in re.findall(r"rank (\d) buckets (\[[^\]]*\])", output)}
    assert sorted(sizes) == [0, 1], output
    events = load_trace(path)["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {1: "rank 0", 2: "rank 1"}
    for rank in (0, 1):
        comm = [e for e in named(events, pid=rank + 1) if e["cat"] == "comm" and not e["name"].startswith("wait")]
        assert {e["name"] for e in comm} == {operation} and {e["args"]["backend"] for e in comm} == {backend}
        assert sorted((e["args"]["bucket"], e["args"]["bytes"]) for e in comm) == sorted(
            (index, size) for index, size in enumerate(sizes[rank]) for _ in range(STEPS))
    assert sorted(os.listdir(tmp_path)) == ["trace.json"]  # parts merged and removed
