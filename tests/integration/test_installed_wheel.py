"""The wheel is the product: built from this checkout, installed into a fresh virtualenv from
requirements.lock, and run from a folder outside the checkout, it applies the schema, creates an
account, takes an event on the Event API, normalizes and folds it, and answers the read API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
EVENTS = [
    {"type": "sent", "occurred_at": "2025-06-01T12:00:00Z", "campaign_id": "spring",
     "delivery_id": "d1", "message_id": "m-1", "recipient": {"email": "john@example.com"}},
    {"type": "opened", "occurred_at": "2025-06-01T13:00:00Z", "message_id": "m-1",
     "recipient": {"email": "john@example.com"}},
]  # fmt: skip


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv outside the checkout holding requirements.lock and the wheel, no more."""
    where = tmp_path_factory.mktemp("wheel")
    assert not where.is_relative_to(ROOT)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", where / "dist", ROOT, cwd=where)  # fmt: skip
    (wheel,) = (where / "dist").glob("mailfold-*.whl")
    run(sys.executable, "-m", "venv", where / "venv", cwd=where)
    pip = (where / "venv" / "bin" / "python", "-m", "pip", "install", "-q",
           "--disable-pip-version-check")  # fmt: skip
    run(*pip, "--require-hashes", "-r", ROOT / "requirements.lock", cwd=where)
    run(*pip, "--no-deps", wheel, cwd=where)
    return where


def environment(settings: Settings, port: int) -> dict[str, str]:
    """The test's topics, groups and database, as the variables an operator sets; no PYTHONPATH."""
    return {
        "PATH": "/usr/bin:/bin",
        "MAILFOLD_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MAILFOLD_DATABASE_URL": settings.database_url,
        "MAILFOLD_RAW_TOPIC": settings.raw_topic,
        "MAILFOLD_EVENTS_TOPIC": settings.events_topic,
        "MAILFOLD_DLQ_TOPIC": settings.dlq_topic,
        "MAILFOLD_SUPPRESSIONS_TOPIC": settings.raw_topic.replace(".raw", ".suppressions"),
        "MAILFOLD_NORMALIZE_GROUP": settings.normalize_group,
        "MAILFOLD_FOLD_GROUP": settings.fold_group,
        "MAILFOLD_FOLD_BATCH_WAIT_MS": "100",
        "MAILFOLD_SECRET_KEY": settings.secret_key,
        "MAILFOLD_PORT": str(port),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def running(installed: Path, settings: Settings) -> Iterator[tuple[Path, dict[str, str]]]:
    """`mailfold serve`, `normalizer` and `fold` from the installed wheel, stopped after."""
    env = environment(settings, free_port())
    mailfold = installed / "venv" / "bin" / "mailfold"
    run(mailfold, "init", cwd=installed, env=env)
    procs = [
        subprocess.Popen([mailfold, command], cwd=installed, env=env, stderr=subprocess.DEVNULL)
        for command in ("serve", "normalizer", "fold")
    ]
    try:
        yield mailfold, env
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def until(answer: httpx.Response | None, deadline: float) -> bool:
    if time.monotonic() > deadline:
        raise AssertionError(f"not there in time: {answer and answer.text}")
    time.sleep(0.2)
    return True


def test_installed_wheel_reads_its_sql_from_itself(installed: Path) -> None:
    python = installed / "venv" / "bin" / "python"
    code = (
        "from service import db, migrations; print(db.SCHEMA_PATH); print(len(db.QUERIES));"
        "print(migrations.FOLDER); print(len(migrations.load()))"
    )
    answer = run(python, "-c", code, cwd=installed, env={"PATH": "/usr/bin:/bin"})
    schema, count, folder, versions = answer.split()
    assert Path(schema).is_relative_to(installed / "venv") and Path(schema).is_file()
    assert int(count) > 50
    assert Path(folder).is_relative_to(installed / "venv")
    assert int(versions) == len(list((ROOT / "migrations").glob("*.sql")))
    mailfold = installed / "venv" / "bin" / "mailfold"
    assert "usage: mailfold" in run(mailfold, "--help", cwd=installed)


def test_installed_wheel_takes_folds_and_answers_an_event(
    running: tuple[Path, dict[str, str]],
) -> None:
    mailfold, env = running
    account = json.loads(run(mailfold, "accounts", "create", "wheel", cwd=mailfold.parent, env=env))
    base = f"http://127.0.0.1:{env['MAILFOLD_PORT']}"
    auth = (account["login"], account["secret"])
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, auth=auth, timeout=5) as client:
        answer = None
        while until(answer, deadline):
            try:
                answer = client.get("/readyz")
            except httpx.TransportError:
                continue
            if answer.status_code == 200:
                break
        assert client.post("/v1/events", json=EVENTS).status_code == 202
        while until(answer, deadline):
            answer = client.get("/v1/deliveries/spring/d1/recipients")
            rows = answer.json()["recipients"] if answer.status_code == 200 else []
            if rows and rows[0]["openCount"] == 1:
                break
    assert rows[0]["email"] == "john@example.com" and rows[0]["status"] == "opened"
    assert os.path.commonpath([mailfold, ROOT]) != str(ROOT)
