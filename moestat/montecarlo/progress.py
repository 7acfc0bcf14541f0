"""A dependency-free progress bar with rate and ETA on the terminal (stderr)."""
from __future__ import annotations

import sys
import time


def _hms(s: float) -> str:
    if s != s or s == float("inf"):
        return "--:--"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return "%d:%02d:%02d" % (h, m, sec) if h else "%02d:%02d" % (m, sec)


class Progress:
    """``[#####.....] 120/400 replicates 30% | 0:45 elapsed | ETA 1:45``.

    On a terminal the line is redrawn in place; otherwise (logs, CI) a line is
    printed at most every ``every`` seconds and at the end.
    """

    def __init__(self, total: int, label: str = "replicates", stream=None, enabled: bool = True,
                 width: int = 30, every: float = 15.0):
        self.total, self.label, self.width, self.every = int(total), label, width, every
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.total > 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = -1e9
        self._extra = ""

    def update(self, k: int = 1, extra: str = "") -> None:
        self.done += k
        self._extra = extra
        now = time.perf_counter()
        if self.enabled and (self.tty or now - self._last >= self.every or self.done >= self.total):
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        el = now - self.t0
        frac = self.done / self.total if self.total else 1.0
        eta = el / self.done * (self.total - self.done) if self.done else float("nan")
        bar = "#" * int(round(frac * self.width))
        return "[%-*s] %d/%d %s %3.0f%% | %s elapsed | ETA %s%s" % (
            self.width, bar, self.done, self.total, self.label, 100 * frac, _hms(el), _hms(eta),
            (" | " + self._extra) if self._extra else "")

    def _draw(self, now):
        text = self.line(now)
        if self.tty:
            self.stream.write("\r" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
