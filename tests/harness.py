"""Runs Mailfold's real parts for a test: the HTTP service (uvicorn on a free port), the
consumers (in-process tasks or separate processes that can be killed), and a database handle."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import asyncpg
import httpx
import uvicorn

from consumers import fold, normalize
from service import db
from service.app import create_app
from service.auth import create_account
from service.ingest import RawSink
from service.settings import Settings
from service.webhooks.base import Context

T = TypeVar("T")


@dataclass
class Account:
    account: str
    login: str
    secret: str


async def wait_for(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 30.0
) -> T:
    """Poll `probe` until `done(result)`; fail with the last result after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last: {result!r}")
        await asyncio.sleep(0.1)


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stops: list[asyncio.Event] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._pool: asyncpg.Pool[Any] | None = None

    async def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            self._pool = await db.create_pool(self.settings.database_url, 4)
        return self._pool

    async def start_app(
        self, *, sink: RawSink | None = None, context: Context | None = None
    ) -> str:
        app = create_app(self.settings, sink=sink, context=context)
        # As `mailfold serve` runs it: the caller's address from MAILFOLD_TRUSTED_PROXIES only.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", proxy_headers=False
        )
        self._server = uvicorn.Server(config)
        self._tasks.append(asyncio.create_task(self._server.serve()))
        while not self._server.started:
            await asyncio.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def _run(self, coro_fn: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        stop = asyncio.Event()
        self._stops.append(stop)
        self._tasks.append(asyncio.create_task(coro_fn(stop)))

    async def start_pipeline(self) -> None:
        """Normalize and fold consumers as tasks of this event loop."""
        self._run(lambda stop: normalize.run(self.settings, stop))
        self._run(lambda stop: fold.Fold(self.settings).run(stop))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for f in fields(Settings):
            env[f"MAILFOLD_{f.name.upper()}"] = str(getattr(self.settings, f.name))
        return env

    def spawn(self, component: str) -> subprocess.Popen[bytes]:
        """A consumer as its own process (`normalize` or `fold`), so a test can SIGKILL it."""
        proc = subprocess.Popen(
            [sys.executable, "-m", f"consumers.{component}"],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._procs.append(proc)
        return proc

    async def account(self, name: str = "acme", allowed_ips: list[str] | None = None) -> Account:
        pool = await self.pool()
        async with pool.acquire() as conn:
            new = await create_account(conn, self.settings.secret_key, name, allowed_ips)
        return Account(new.account, new.login, new.secret)

    def client(self, account: Account | None = None, **kwargs: Any) -> httpx.AsyncClient:
        auth = (account.login, account.secret) if account else None
        return httpx.AsyncClient(base_url=self.base_url, auth=auth, timeout=30, **kwargs)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        pool = await self.pool()
        return list(await pool.fetch(sql, *args))

    async def close(self) -> None:
        for stop in self._stops:
            stop.set()
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 30)
            except Exception:
                task.cancel()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._pool is not None:
            await self._pool.close()
