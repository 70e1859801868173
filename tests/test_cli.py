"""`mailfold normalize`: prints the canonical events a raw body yields, as the consumer would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "webhooks" / "fixtures"
SCHEMA = Draft202012Validator(orjson.loads((ROOT / "schemas" / "event.v1.json").read_bytes()))


def normalize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfold", "normalize", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={"MAILFOLD_SECRET_KEY": "unused-by-normalize", "PATH": "/usr/bin:/bin"},
    )


def test_event_api_body_prints_one_schema_valid_line_per_event(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps([
        {"type": "sent", "occurred_at": "2025-06-01T12:00:00Z", "delivery_id": "d1",
         "recipient": {"email": "A@Example.com"}},
        {"type": "opened", "occurred_at": "2025-06-01T13:00:00Z", "delivery_id": "d1",
         "recipient": {"email": "a@example.com"}},
    ]))  # fmt: skip
    done = normalize("api", str(body), "--account", "acme")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["sent", "opened"]
    assert {e["account"] for e in lines} == {"acme"}
    for line in lines:
        SCHEMA.validate(line)


def test_a_provider_batch_is_split_into_events() -> None:
    done = normalize("sendgrid", str(FIXTURES / "sendgrid" / "batch.json"))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) > 1


def test_an_sns_body_is_read_with_its_text_content_type() -> None:
    path = FIXTURES / "ses" / "event_bounce.json"
    done = normalize("ses", str(path), "--content-type", "text/plain; charset=UTF-8")
    assert done.returncode == 0, done.stderr
    (event,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (event["type"], event["bounce"]["class"]) == ("bounced", "hard")


def test_a_ping_prints_nothing_and_succeeds(tmp_path: Path) -> None:
    ping = tmp_path / "ping.json"
    ping.write_text('[{"msys":{}}]')
    done = normalize("sparkpost", str(ping))
    assert (done.returncode, done.stdout) == (0, "")


def test_unreadable_input_is_a_clear_message_and_a_failure(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    done = normalize("api", str(bad))
    assert done.returncode != 0
    assert "cannot read" in done.stderr and done.stdout == ""


def mailfold(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfold", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_normalize_runs_offline_without_a_secret_key(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"type": "sent", "occurred_at": "2025-06-01T12:00:00Z",
                                "delivery_id": "d1", "recipient": {"email": "a@b.c"}}))  # fmt: skip
    done = mailfold("normalize", "api", str(body), MAILFOLD_SECRET_KEY_FILE="/nonexistent")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["type"] == "sent"


UNREACHABLE = {
    "MAILFOLD_SECRET_KEY": "k",
    "MAILFOLD_DATABASE_URL": "postgresql://mailfold:hunter2@127.0.0.1:1/mailfold",
    "MAILFOLD_KAFKA_BOOTSTRAP": "127.0.0.1:1",
}


def test_an_unreachable_database_is_one_line_naming_it_without_its_password() -> None:
    done = mailfold("accounts", "create", "acme", **UNREACHABLE)
    assert done.returncode == 3
    assert done.stderr.startswith("mailfold: cannot reach PostgreSQL at 127.0.0.1:1/mailfold")
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_broker_is_one_line_naming_it() -> None:
    done = mailfold("dlq", "list", **UNREACHABLE)
    assert done.returncode == 3
    lines = [line for line in done.stderr.splitlines() if line.startswith("mailfold:")]
    assert lines and lines[-1].startswith("mailfold: cannot reach Kafka at 127.0.0.1:1")
    assert "Traceback" not in done.stderr


def test_a_setting_that_is_not_a_number_is_named_not_a_traceback() -> None:
    done = mailfold("init", MAILFOLD_SECRET_KEY="k", MAILFOLD_PORT="abc")
    assert done.returncode != 0
    assert "MAILFOLD_PORT must be a whole number, not 'abc'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_version_is_printed() -> None:
    done = mailfold("--version")
    assert done.returncode == 0 and done.stdout.startswith("mailfold ")


def test_wrong_usage_exits_2_and_unreadable_input_4(tmp_path: Path) -> None:
    assert mailfold("accounts", "frobnicate").returncode == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert normalize("api", str(bad)).returncode == 4


def test_a_missing_file_is_one_line_not_a_database_outage(tmp_path: Path) -> None:
    done = normalize("api", str(tmp_path / "nothing.json"))
    assert done.returncode == 1
    assert done.stderr.startswith("mailfold: cannot read ") and len(done.stderr.splitlines()) == 1
