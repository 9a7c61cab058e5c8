"""Progress of long command-line work (the demo loader): a bar on a terminal, plain lines
otherwise.

On a terminal the line is redrawn at most ten times a second: a bar, events written of the
total, the rate and the time left. When output goes to a file or a pipe (CI logs, `docker
logs`), carriage returns would pile up in one endless line, so a plain line is printed every
`every_seconds` instead, and a last one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Call `update(done)` with the running count; `finish()` once at the end."""

    def __init__(
        self,
        total: int,
        label: str = "events",
        stream: TextIO | None = None,
        every_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self.every = REDRAW_SECONDS if self.interactive else every_seconds
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._shown_at: float | None = None
        self._shown_done: int | None = None

    def line(self) -> str:
        """The current state in words: done of total, share, rate, time left."""
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = _duration(left) if left is not None else "?"
        text = (
            f"{self.done:,}/{self.total:,} {self.label} ({share:.0%}), {rate:,.0f}/s, "
            f"{_duration(elapsed)} elapsed, {eta} left"
        )
        if self.interactive:
            filled = round(BAR_WIDTH * min(share, 1.0))
            return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}"
        return text

    def update(self, done: int) -> None:
        self.done = done
        now = self.clock()
        if self._shown_at is not None and now - self._shown_at < self.every:
            return
        self._shown_at = now
        self._show()

    def finish(self) -> None:
        if self._shown_done != self.done:
            self._show()
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def _show(self) -> None:
        self._shown_done = self.done
        if self.interactive:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
