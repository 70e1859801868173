"""Log lines: JSON by default, readable text when MAILFOLD_LOG_FORMAT=text, context in both."""

from __future__ import annotations

import logging

import orjson
import pytest

from service.logs import JsonFormatter, TextFormatter
from service.settings import Settings


def record() -> logging.LogRecord:
    rec = logging.LogRecord("mailfold.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    rec.request_id, rec.status = "rid-1", 200
    return rec


def test_json_lines_carry_the_context() -> None:
    line = orjson.loads(JsonFormatter().format(record()))
    assert (line["message"], line["request_id"], line["status"]) == ("GET /x", "rid-1", 200)
    assert (line["level"], line["logger"]) == ("info", "mailfold.access")


def test_text_lines_read_as_a_sentence_then_the_context() -> None:
    line = TextFormatter().format(record())
    assert line.endswith(" INFO    mailfold.access: GET /x  request_id=rid-1 status=200")


def test_the_format_and_the_metrics_host_are_settings() -> None:
    env = {"MAILFOLD_SECRET_KEY": "k"}
    assert Settings.from_env(env).log_format == "json"
    text = Settings.from_env({**env, "MAILFOLD_LOG_FORMAT": "text"})
    assert text.log_format == "text"
    host = Settings.from_env({**env, "MAILFOLD_METRICS_HOST": "0.0.0.0"}).metrics_host
    assert host == "0.0.0.0"
    with pytest.raises(SystemExit, match="log_format must be one of json, text"):
        Settings.from_env({**env, "MAILFOLD_LOG_FORMAT": "xml"})
