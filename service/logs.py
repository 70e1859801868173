"""Logs on stderr with whatever context a call passes in `extra`: one JSON object per line
(MAILFOLD_LOG_FORMAT=json, the default), or one readable line (text) for a terminal."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

CONTEXT_KEYS = (
    "request_id",
    "account",
    "source",
    "topic",
    "partition",
    "offset",
    "count",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's time, level, logger and message, then the context it carries."""
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    for key in CONTEXT_KEYS:
        if hasattr(record, key):
            out[key] = getattr(record, key)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = fields(record)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        out = fields(record)
        head = f"{out.pop('time')} {out.pop('level').upper():<7} {out.pop('logger')}: "
        line = head + str(out.pop("message"))
        if out:
            line += "  " + " ".join(f"{k}={v}" for k, v in out.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def configure(level: str = "INFO", format: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[format]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
