"""The parameter server's log of dropped and refused messages: counts per interval, not a line per message.

A server on a reachable port meets port scanners, misconfigured peers and floods of
garbage; a line per dropped message would let any of them fill the disk and bury the
lines that matter. So the first refusal after a quiet spell is logged at once, in full
(the one a user debugging a wrong secret needs to see), and the rest of that interval
is counted by kind and summed up in one line when the interval ends:

    parameter server: refused 1234 more message(s) in the last 10 s: 1200 bad MAC, 34 malformed;
    the last from 127.0.0.1: message authentication failed (wrong or missing secret)

At most two lines per interval, however many messages arrive. Refused handshakes
(comm/zap.py: a peer without the secret, whose ZeroMQ retries every 100 ms) are counted
here too, from the handshake handler's thread: hence the lock.
"""
from __future__ import annotations

import collections
import threading
import time


class RefusalLog:
    """Counts refusals by kind ("bad MAC", "malformed", "refused", ...) and logs them rate-limited.

    `refused()` is called per message or handshake, from any thread; `flush()` from the server's
    loop (it logs the interval's summary once the interval is over) and once more when the server stops.
    """

    def __init__(self, logger, interval=10.0, clock=time.monotonic):
        self.logger = logger
        self.interval = float(interval)
        self.clock = clock
        self.counts = collections.Counter()
        self.last = None  # (peer, reason) of the latest counted refusal
        self.window_start = None  # None: quiet, the next refusal is logged at once
        self.lock = threading.Lock()

    def refused(self, kind, reason, peer, exc_info=False):
        with self.lock:
            self._count(kind, reason, peer, exc_info)

    def _count(self, kind, reason, peer, exc_info):
        if self.window_start is None:
            self.window_start = self.clock()
            self.logger.warning("parameter server: refused a message from %s (%s): %s; further refusals are "
                                "counted and logged every %g s", peer, kind, reason, self.interval,
                                exc_info=exc_info)
            return
        self.counts[kind] += 1
        self.last = (peer, reason)

    def flush(self, force=False):
        """Log the interval's count once the interval is over (or now, with `force`)."""
        with self.lock:
            self._flush(force)

    def _flush(self, force):
        if self.window_start is None:
            return
        elapsed = self.clock() - self.window_start
        if elapsed < self.interval and not force:
            return
        if not self.counts:
            self.window_start = None  # a quiet interval: the next refusal is worth a line of its own
            return
        kinds = ", ".join(f"{count} {kind}" for kind, count in self.counts.most_common())
        peer, reason = self.last
        self.logger.warning("parameter server: refused %d more message(s) in the last %.0f s: %s; the last from "
                            "%s: %s", sum(self.counts.values()), elapsed, kinds, peer, reason)
        self.counts.clear()
        self.window_start = self.clock()
