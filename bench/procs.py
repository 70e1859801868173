"""Processes a benchmark runs, and the CPU seconds each one spends.

CPU comes from /proc/<pid>/stat (utime + stime). PostgreSQL is the postmaster plus every
backend: the live children's time plus what the postmaster has reaped (cutime + cstime), so a
backend that exits mid-run is still counted exactly once. Children this process waits for
(the load generators) are counted through getrusage(RUSAGE_CHILDREN).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TICK = os.sysconf("SC_CLK_TCK")
PYTHON = sys.executable


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces; everything after its closing parenthesis is fields 3...
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of a live process (plus its reaped children's); 0 once it is gone."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICK


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def postgres_seconds(postmaster: int) -> float:
    return cpu_seconds(postmaster, reaped=True) + sum(cpu_seconds(c) for c in children(postmaster))


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """CPU seconds per role (server, kafka, postgres, ...) between `start` and `stop`."""

    probes: dict[str, Callable[[], float]] = field(default_factory=dict)
    _before: dict[str, float] = field(default_factory=dict)

    def watch(self, role: str, probe: Callable[[], float]) -> None:
        self.probes[role] = probe

    def watch_pid(self, role: str, pid: int) -> None:
        self.probes[role] = lambda: cpu_seconds(pid)

    def forget(self, role: str) -> None:
        self.probes.pop(role, None)

    def start(self) -> None:
        self._before = {role: probe() for role, probe in self.probes.items()}
        self._before["load"] = children_seconds()
        self._before["bench"] = self_seconds()
        self._wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        after = {role: probe() for role, probe in self.probes.items()}
        after["load"] = children_seconds()
        after["bench"] = self_seconds()
        spent = {
            role: round(after[role] - self._before.get(role, after[role]), 2) for role in after
        }
        spent["wall"] = round(time.monotonic() - self._wall, 2)
        return spent


class Process:
    """A long-running child (server or consumer) that a phase starts and stops."""

    def __init__(self, role: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.role = role
        self.argv = argv
        self.env = dict(env)
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> Process:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=out, stderr=out, cwd=str(ROOT)
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Poll `url` until it answers 200; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if not self.alive():
                    raise RuntimeError(f"{self.role} exited during start; see {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.role} not ready after {timeout}s; see {self.log}")
                await asyncio.sleep(0.1)


ROOT = Path(__file__).resolve().parent.parent


async def run_child(argv: list[str], env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Run a child to completion (a load generator); returns its exit code and stdout."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env) if env is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return proc.returncode, out.decode()
