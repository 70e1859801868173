"""Closed-loop maximum throughput with wrk (Debian's `wrk`), falling back to bench.load.

wrk is C: on two cores it leaves more CPU to the server under test than a Python client would.
Its Lua script cycles over the given bodies and prints a JSON summary from `done()`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import write_blobs
from bench.http import request
from bench.procs import PYTHON, run_child

SCRIPT = """
local bodies = {}
local f = assert(io.open(%(bodies)s, "rb"))
for line in f:lines() do bodies[#bodies + 1] = line end
f:close()
local headers = %(headers)s
local requests = {}
local i = 0
init = function(args)
  for k, body in ipairs(bodies) do
    requests[k] = wrk.format("POST", %(path)s, headers, body)
  end
end
request = function()
  i = i %% #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,' ..
    '"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def lua_table(headers: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()) + "}"


async def throughput(
    folder: Path,
    port: int,
    path: str,
    bodies: list[bytes],
    headers: Mapping[str, str],
    connections: int,
    duration: float,
) -> dict[str, Any]:
    """Requests per second answered 2xx by the server on `port`, closed loop."""
    folder.mkdir(parents=True, exist_ok=True)
    if not available():
        return await _python(folder, port, path, bodies, headers, connections, duration)
    lines = folder / "wrk-bodies.txt"
    lines.write_bytes(b"\n".join(bodies) + b"\n")
    script = folder / "wrk.lua"
    script.write_text(
        SCRIPT
        % {
            "bodies": lua_string(str(lines)),
            "headers": lua_table(headers),
            "path": lua_string(path),
        }
    )
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s", "-s", str(script)]
    _, out = await run_child([*argv, "--timeout", "10s", f"http://127.0.0.1:{port}"])
    summary = orjson.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    seconds = summary["duration_us"] / 1e6
    good = summary["requests"] - summary["status"]
    return {
        "tool": "wrk",
        "rps": good / seconds,
        "requests": summary["requests"],
        "non_2xx": summary["status"],
        "socket_errors": summary["connect"] + summary["read"] + summary["write"],
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
    }


async def _python(
    folder: Path,
    port: int,
    path: str,
    bodies: list[bytes],
    headers: Mapping[str, str],
    connections: int,
    duration: float,
) -> dict[str, Any]:
    requests = folder / "closed-requests.bin"
    write_blobs(requests, (request("POST", path, "127.0.0.1", b, headers) for b in bodies))
    spec = folder / "closed.json"
    out = folder / "closed-result.json"
    spec.write_bytes(
        orjson.dumps(
            {
                "mode": "closed",
                "host": "127.0.0.1",
                "port": port,
                "requests_file": str(requests),
                "connections": connections,
                "duration": duration,
            }
        )
    )
    await run_child([PYTHON, "-m", "bench.load", str(spec), str(out)])
    result = orjson.loads(out.read_bytes())
    return {"tool": "bench.load", "rps": result["rps"], "non_2xx": result["failed"]}
