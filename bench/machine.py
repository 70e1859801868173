"""The facts of the machine a run happened on, and how busy it was."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

LIBRARIES = ("starlette", "uvicorn", "aiokafka", "asyncpg", "orjson", "cryptography")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def busy_processes(own: set[int]) -> list[str]:
    """Other processes using CPU right now (top 5 by %CPU), for the record."""
    if not shutil.which("ps"):
        return []
    out = subprocess.run(
        ["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = []
    for line in out.splitlines():
        pid, pcpu, comm = line.split(None, 2)
        if int(pid) not in own and float(pcpu) >= 1.0:
            rows.append(f"{comm} {pcpu}%")
    return rows[:5]


def java_version() -> str:
    if not shutil.which("java"):
        return "unknown"
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else "unknown"


def wrk_version() -> str | None:
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    words = (out.stdout or out.stderr).split()  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
    return " ".join(words[:2]) if words else "wrk"


def facts(kafka: str, postgres: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "kafka": kafka,
        "postgresql": postgres,
        "java": java_version(),
        "wrk": wrk_version(),
        "libraries": {name: version(name) for name in LIBRARIES},
    }
