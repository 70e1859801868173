"""Progress of a long command: a bar on a terminal, log lines elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from consumers.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_that_ends_with_a_newline() -> None:
    stream = Terminal()
    progress = Progress("replay", 10, "raw records", extra="events", stream=stream)
    progress.update(5, 7)
    progress.update(10, 12, final=True)
    text = stream.getvalue()
    assert text.startswith("\rreplay [") and "100.0%" in text and text.endswith("\n")
    assert "10/10 raw records  12 events" in text


def test_a_pipe_gets_log_lines_and_no_bar(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailfold.progress")
    stream = io.StringIO()
    progress = Progress("dlq retry", 4, "letters", stream=stream, every_s=3600)
    progress.update(1)
    progress.update(2)  # within the interval: not logged
    progress.update(4, final=True)
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("dlq retry: 25.0%  1/4 letters")
    assert lines[-1].startswith("dlq retry: 100.0%  4/4 letters") and len(lines) == 2


def test_the_ratio_is_reported_to_a_callback_every_time() -> None:
    seen: list[float] = []
    progress = Progress("replay", 0, "raw records", stream=None, on_update=seen.append)
    progress.update(0, final=True)
    assert seen == [1.0]
