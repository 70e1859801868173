"""Progress of a long command: a redrawn bar on a terminal, otherwise a log line now and then.

A bar's carriage returns make a mess of a log file or a CI transcript, so where the stream is
not a terminal the same numbers go to the log every `every_s` seconds and once at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger("mailfold.progress")


class Progress:
    """`update(done, extra)` as work advances; `final=True` once at the end."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str,
        *,
        extra: str = "",
        stream: TextIO | None = sys.stderr,
        on_update: Callable[[float], None] | None = None,
        every_s: float = 10.0,
        width: int = 30,
    ) -> None:
        self.label, self.total, self.unit, self.extra = label, total, unit, extra
        self.stream = stream
        self.on_update = on_update
        self.terminal = stream is not None and stream.isatty()
        self.every_s = 0.1 if self.terminal else every_s
        self.width = width
        self.started = time.monotonic()
        self._shown = -self.every_s

    def update(self, done: int, extra: int = 0, final: bool = False) -> None:
        ratio = done / self.total if self.total else 1.0
        if self.on_update is not None:
            self.on_update(ratio)
        now = time.monotonic()
        if self.stream is None or (not final and now - self._shown < self.every_s):
            return
        self._shown = now
        counts = f"{done}/{self.total} {self.unit}"
        if self.extra:
            counts += f"  {extra} {self.extra}"
        elapsed = f"{now - self.started:.1f}s"
        if self.terminal:
            self.bar(ratio, counts, elapsed, final)
        else:
            log.info("%s: %.1f%%  %s  %s", self.label, ratio * 100, counts, elapsed)

    def bar(self, ratio: float, counts: str, elapsed: str, final: bool) -> None:
        assert self.stream is not None
        filled = int(ratio * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {ratio:6.1%}  {counts}  {elapsed}")
        if final:
            self.stream.write("\n")
        self.stream.flush()
