"""/docs: the API reference page and its files, served from the installed package."""

from __future__ import annotations

import pytest
from openapi_ui_bundles import swagger_ui

from tests.harness import Harness

pytestmark = pytest.mark.integration


async def test_the_reference_page_and_its_files_are_served_locally(harness: Harness) -> None:
    await harness.start_app()
    async with harness.client() as client:
        page = await client.get("/docs")
        bundle = await client.get("/docs/swagger-ui-bundle.js")
        init = await client.get("/docs/mailfold-docs.js")
        missing = await client.get("/docs/index.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "docs/swagger-ui-bundle.js" in page.text and "docs/swagger-ui.css" in page.text
    assert "http" not in page.text  # nothing from a CDN or any other host
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert bundle.content == (swagger_ui.static_path / "swagger-ui-bundle.js").read_bytes()
    assert 'url: "openapi.json"' in init.text
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
