"""A consumer's listener: /metrics, /healthz and /readyz, on the configured address."""

from __future__ import annotations

import socket

import httpx

from service import metrics


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_listener_binds_where_the_metrics_host_setting_says() -> None:
    host = "127.0.0.2"  # any loopback address but the default
    port = free_port(host)
    metrics.configure(host)
    try:
        server = await metrics.serve(port)
    finally:
        metrics.configure("127.0.0.1")
    assert server is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:
            health, ready, text = [await client.get(p) for p in ("/healthz", "/readyz", "/metrics")]
    finally:
        server.close()
        await server.wait_closed()
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200 and "stuck_seconds" in ready.json()
    assert text.headers["content-type"] == metrics.CONTENT_TYPE
    assert "mailfold_build_info" in text.text


async def test_no_port_means_no_listener() -> None:
    assert await metrics.serve(0) is None
