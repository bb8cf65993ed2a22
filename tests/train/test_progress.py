"""Progress: the exact plain lines of a CI log, silence on other ranks, a tqdm bar on a terminal."""
import io

import pytest

from distrain.train import progress as progress_module
from distrain.train.progress import Progress


class FakeClock:
    """A monotonic clock that moves only when told: ETAs become exact."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run(progress, clock, steps, seconds_per_step=0.5, samples_per_s=1534.4):
    for step in steps:
        clock.now += seconds_per_step
        progress.update(step, step // 40, 1.0 / step, samples_per_s)
    progress.close()


def test_plain_mode_prints_every_print_every_steps_and_at_the_end():
    stream, clock = io.StringIO(), FakeClock()
    run(Progress(120, print_every=50, stream=stream, interactive=False, clock=clock), clock, range(1, 121))
    assert stream.getvalue().splitlines() == [
        "step 50/120 epoch 1 loss 0.02 1534 samples/s eta 0:35",  # 25 s for 50 steps, 70 to go
        "step 100/120 epoch 2 loss 0.01 1534 samples/s eta 0:10",
        "step 120/120 epoch 3 loss 0.008333 1534 samples/s done in 1:00",
    ]


def test_plain_mode_prints_the_last_step_once_and_counts_a_resumed_run_from_its_start():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(7300, initial_step=7000, print_every=100, stream=stream, interactive=False, clock=clock)
    run(progress, clock, range(7001, 7301), seconds_per_step=12.0, samples_per_s=42.123)
    assert stream.getvalue().splitlines() == [
        "step 7100/7300 epoch 177 loss 0.0001408 42.1 samples/s eta 40:00",
        "step 7200/7300 epoch 180 loss 0.0001389 42.1 samples/s eta 20:00",
        "step 7300/7300 epoch 182 loss 0.000137 42.1 samples/s done in 1:00:00",
    ]


def test_plain_mode_formats_only_the_lines_it_prints(monkeypatch):
    formatted = []
    monkeypatch.setattr(progress_module, "_number", lambda value: formatted.append(value) or str(value))
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(1000, print_every=100, stream=stream, interactive=False, clock=clock)
    for step in range(1, 251):
        progress.update(step, 0, 0.5, 100.0)
    assert len(formatted) == 2 * 2  # epoch and loss of steps 100 and 200, nothing for the 248 others


def test_interactive_bar_redraws_at_most_every_mininterval(monkeypatch):
    redraws = []
    monkeypatch.setattr(Progress, "_redraw", lambda self: redraws.append(self._latest[0]))
    clock = FakeClock()
    progress = Progress(1000, stream=io.StringIO(), interactive=True, mininterval=0.1, clock=clock)
    for step in range(1, 1001):
        clock.now += 0.001  # 1000 steps in 1 s: about 10 redraws, not 1000
        progress.update(step, 0, 0.5, 100.0)
    assert len(redraws) == 10
    assert redraws[0] == 1 and all(99 <= later - earlier <= 101 for earlier, later in zip(redraws, redraws[1:]))
    progress._bar.close()


def test_disabled_prints_nothing_at_all():
    for interactive in (False, True):
        stream, clock = Terminal(), FakeClock()
        progress = Progress(100, enabled=False, interactive=interactive, print_every=1, stream=stream, clock=clock)
        progress.write("a message")
        run(progress, clock, range(1, 101))
        assert stream.getvalue() == ""


def test_interactive_bar_shows_epoch_loss_and_samples_per_second():
    stream = io.StringIO()
    progress = Progress(120, stream=stream, interactive=True, mininterval=0)
    for step in range(1, 121):
        progress.update(step, 3, 0.123456, 1534.4)
        if step == 60:
            progress.write("checkpoint written at step 60")
    progress.close()
    output = stream.getvalue()
    last = output.split("\r")[-1].strip()
    assert last.startswith("epoch 3: 100%") and "120/120" in last
    assert "loss=0.1235, 1534 samples/s" in last and "steps/s" in last
    assert "\rcheckpoint written at step 60\n" in output  # on its own line, the bar cleared before it
    assert output.endswith("\n")  # close leaves the finished bar on its own line


@pytest.mark.parametrize("setting, stream_kind, expect_bar", [
    (None, Terminal, True), (None, io.StringIO, False),
    ("1", io.StringIO, True), ("0", Terminal, False),
])
def test_auto_interactive_follows_the_terminal_and_distrain_interactive(monkeypatch, setting, stream_kind, expect_bar):
    if setting is None:
        monkeypatch.delenv("DISTRAIN_INTERACTIVE", raising=False)
    else:
        monkeypatch.setenv("DISTRAIN_INTERACTIVE", setting)
    stream, clock = stream_kind(), FakeClock()
    run(Progress(10, print_every=5, stream=stream, clock=clock), clock, range(1, 11))
    output = stream.getvalue()
    if expect_bar:
        assert "\r" in output and "10/10" in output
    else:
        assert output.splitlines() == ["step 5/10 epoch 0 loss 0.2 1534 samples/s eta 0:03",
                                       "step 10/10 epoch 0 loss 0.1 1534 samples/s done in 0:05"]


def test_write_in_plain_mode_is_a_line_and_close_twice_prints_once():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(10, print_every=100, stream=stream, interactive=False, clock=clock)
    progress.write("evaluating")
    run(progress, clock, [1])
    progress.close()
    assert stream.getvalue().splitlines() == ["evaluating", "step 1/10 epoch 0 loss 1 1534 samples/s done in 0:01"]
