"""/openapi.json describes every route, and schemathesis finds nothing against the live app."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from starlette.routing import Route

from service.app import create_app
from service.read import openapi
from service.settings import Settings
from tests.harness import Account, Harness
from tests.read.story import tell_story

HOOKS = "tests.read.schemathesis_hooks"
CONFIG = Path(__file__).parent / "read" / "schemathesis.toml"
INGEST = "^/(v1/events|webhooks/)"
REPORTS = "^/v1/reports$"
RUN_TIMEOUT_S = 500


def test_every_route_and_method_is_documented() -> None:
    settings = Settings()
    documented = openapi.document(settings)["paths"]
    for route in create_app(settings).routes:
        assert isinstance(route, Route)
        assert route.path in documented, f"{route.path} is not in /openapi.json"
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        assert methods <= set(documented[route.path]), f"{route.path}: {methods}"


async def schemathesis(harness: Harness, acme: Account, *selection: str) -> tuple[int, str]:
    """Run the schemathesis CLI against the live app; (exit code, output)."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
        "run", f"{harness.base_url}/openapi.json", *selection,
        "--checks", "all", "--auth", f"{acme.login}:{acme.secret}",
        "--max-examples", os.environ.get("MAILFOLD_SCHEMATHESIS_EXAMPLES", "50"),
        # one worker: CPython 3.11's ast.parse, which hypothesis calls, is not thread-safe
        "--seed", "1", "--workers", "1", "--report-dir", os.devnull,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "SCHEMATHESIS_HOOKS": HOOKS},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, output.decode(errors="replace")


@pytest.fixture
async def live(harness: Harness) -> tuple[Harness, Account]:
    """The app with the story folded, so the documented example ids answer 200."""
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account("acme")
    async with harness.client(acme) as client:
        await tell_story(harness, client)
    return harness, acme


@pytest.mark.integration
@pytest.mark.timeout(RUN_TIMEOUT_S + 100)
async def test_schemathesis_finds_nothing_in_the_read_api(live: tuple[Harness, Account]) -> None:
    code, output = await schemathesis(*live, "--exclude-path-regex", f"{INGEST}|{REPORTS}")
    assert code == 0, output


@pytest.mark.integration
@pytest.mark.timeout(RUN_TIMEOUT_S + 100)
async def test_schemathesis_finds_nothing_in_the_report_builder(
    live: tuple[Harness, Account],
) -> None:
    """Every check but one: the report builder has rules between its parameters and of the
    calendar that OpenAPI cannot state (a client or country allows only the open and click
    counts, a time zone needs whole-hour offsets over the dates asked for, a date or week must
    exist), so a schema-valid request may rightly get the 400 naming the rule it breaks
    (tests/test_reports.py and tests/read/test_reports.py check those answers)."""
    code, output = await schemathesis(
        *live,
        "--include-path-regex",
        REPORTS,
        "--exclude-checks",
        "positive_data_acceptance",
    )
    assert code == 0, output


@pytest.mark.integration
@pytest.mark.timeout(RUN_TIMEOUT_S + 100)
async def test_schemathesis_finds_nothing_in_ingest(live: tuple[Harness, Account]) -> None:
    code, output = await schemathesis(*live, "--include-path-regex", INGEST)
    assert code == 0, output
