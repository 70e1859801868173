"""The HTTP server `mailfold serve` runs: uvicorn, with one difference in how it ends."""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
from collections.abc import Iterator
from typing import Any, Final

import uvicorn

GRACE_S = 10  # requests in flight get this long to finish after SIGTERM
# How uvicorn serves the app (here, and in the benchmark's baseline, so that the two are compared
# on the same stack): libuv's event loop and the httptools parser, both C, instead of asyncio's
# pure-Python loop and h11; at thousands of small requests a second they are most of the cost of
# a request.
LOOP: Final = "uvloop"
HTTP: Final = "httptools"


class Server(uvicorn.Server):
    """uvicorn's server, except that after a SIGTERM or SIGINT it has shut down cleanly (requests
    drained, producer flushed) the process exits with status 0, as the consumers do. uvicorn
    itself raises the signal again once drained, so the process would die of it (status -15),
    which supervisors and scripts cannot tell from being killed mid-request."""

    @classmethod
    def for_app(cls, app: Any, host: str, port: int) -> Server:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=GRACE_S,
            loop=LOOP,
            http=HTTP,
            # uvicorn would rewrite the peer from X-Forwarded-For for 127.0.0.1 (or
            # FORWARDED_ALLOW_IPS); the caller's address is Mailfold's to work out, from
            # MAILFOLD_TRUSTED_PROXIES only (service.http.remote_addr).
            proxy_headers=False,
        )
        return cls(config)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up built (modules, the app, the pool, the producer: some 50,000 objects)
        # lives as long as the process; frozen, the cyclic collector stops walking it. Otherwise
        # each full collection stalled the loop for 20-30 ms, a few times a minute under load.
        gc.freeze()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
