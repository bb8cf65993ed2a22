"""What rank 0 shows while it trains: a tqdm bar on a terminal, a plain line every N steps elsewhere.

A terminal gets a bar that redraws in place (epoch, step/total, loss, samples/s, tqdm's rate
and ETA). A CI log or a file gets no carriage returns, only a line every `print_every` steps
and one at the end::

    step 100/500 epoch 2 loss 0.1234 1534 samples/s eta 0:42
    step 500/500 epoch 10 loss 0.0213 1540 samples/s done in 2:45

Ranks write their output through the launcher's pipes, so they cannot see the terminal
themselves: the launcher sets DISTRAIN_INTERACTIVE=1 for its ranks when its own stderr is a
terminal. DISTRAIN_INTERACTIVE=0 asks for plain lines even on a terminal.

`update` runs every step, so it costs a clock read and a comparison when nothing is shown:
the strings are formatted only when a bar is redrawn (at most every `mininterval` seconds)
or a line is printed.
"""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


class Progress:
    """Rank 0's progress display; other ranks create it with enabled=False and it prints nothing.

    Args:
        total_steps: the number of optimizer steps of the whole run.
        initial_step: the step a resumed run starts from (the bar and the ETA count from it).
        enabled: False on every rank but 0: nothing is printed, `write` included.
        interactive: True for a tqdm bar, False for plain lines, None to decide: a bar when
            DISTRAIN_INTERACTIVE is "1", or it is unset and `stream` is a terminal.
        print_every: plain mode prints a line at every step that is a multiple of this.
        stream: where it all goes (default: sys.stderr at the time of the call).
        mininterval: the shortest time in seconds between two redraws of the bar.
        clock: the monotonic clock, seconds (tests pass a fake one).

    Example::

        progress = Progress(500, enabled=rank == 0)
        for step in range(1, 501):
            ...
            progress.update(step, epoch, loss, samples_per_s)
        progress.close()
    """

    def __init__(self, total_steps, *, initial_step=0, enabled=True, interactive=None, print_every=50, stream=None,
                 mininterval=0.1, clock=time.monotonic):
        self.enabled = enabled
        self.total_steps = total_steps
        self.print_every = max(1, int(print_every))
        self._stream = sys.stderr if stream is None else stream
        self._clock, self._mininterval = clock, mininterval
        self._start_time, self._start_step = clock(), initial_step
        self._last_shown = float("-inf")
        self._latest = None  # (step, epoch, loss, samples_per_s) of the last update
        self._bar = None
        if enabled and (_is_terminal(self._stream) if interactive is None else interactive):
            self._bar = _Bar(total=total_steps, initial=initial_step, file=self._stream, unit=" steps",
                             dynamic_ncols=True, mininterval=0, miniters=1)

    def update(self, step, epoch, loss, samples_per_s):
        """Record step `step`'s numbers; redraw the bar or print a line when it is time to."""
        if not self.enabled:
            return
        self._latest = (step, epoch, loss, samples_per_s)
        if self._bar is not None:
            now = self._clock()
            if now - self._last_shown >= self._mininterval:
                self._last_shown = now
                self._redraw()
        elif step % self.print_every == 0 and step != self.total_steps:  # the last step's line comes from close
            self._print_line(f"eta {duration_text(self._remaining_seconds(step))}")

    def write(self, message):
        """Print a line of text above the bar (without breaking it), or as a plain line."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        else:
            self._stream.write(message + "\n")
            self._stream.flush()

    def close(self):
        """Show the last step's numbers (plain mode: '... done in M:SS') and let go of the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            if self._latest is not None:
                self._redraw()
            self._bar.close()
            self._bar = None
        elif self._latest is not None:
            self._print_line(f"done in {duration_text(self._clock() - self._start_time)}")
        self.enabled = False  # a second close prints nothing

    def _redraw(self):
        step, epoch, loss, samples_per_s = self._latest
        self._bar.set_description_str(f"epoch {_number(epoch)}", refresh=False)
        self._bar.set_postfix_str(f"loss={_number(loss)}, {_rate(samples_per_s)} samples/s", refresh=False)
        if step != self._bar.n:
            self._bar.update(step - self._bar.n)  # mininterval=0, miniters=1: tqdm redraws (and feeds its rate)
        else:
            self._bar.refresh()

    def _print_line(self, ending):
        step, epoch, loss, samples_per_s = self._latest
        self._stream.write(f"step {step}/{self.total_steps} epoch {_number(epoch)} loss {_number(loss)} "
                           f"{_rate(samples_per_s)} samples/s {ending}\n")
        self._stream.flush()  # ranks write into pipes, which would otherwise hold the line back

    def _remaining_seconds(self, step):
        done = step - self._start_step
        return (self._clock() - self._start_time) / done * (self.total_steps - step) if done > 0 else float("nan")


class _Bar(tqdm):
    """tqdm without its monitor thread: Progress decides when to redraw, so it needs none."""
    monitor_interval = 0


def _is_terminal(stream):
    setting = os.environ.get("DISTRAIN_INTERACTIVE")
    if setting in ("0", "1"):
        return setting == "1"
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _number(value):
    """A loss or an epoch as a person reads it: 4 significant digits, integers as they are."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _rate(samples_per_s):
    return f"{samples_per_s:.0f}" if samples_per_s >= 100 else f"{samples_per_s:.3g}"


def duration_text(seconds):
    """Seconds as H:MM:SS from an hour on, else M:SS, to the nearest second (halves up); '?' while unknown."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    minutes, seconds = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
