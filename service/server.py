"""The HTTP server `mailfold serve` runs: uvicorn, with one difference in how it ends."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

GRACE_S = 10  # requests in flight get this long to finish after SIGTERM


class Server(uvicorn.Server):
    """uvicorn's server, except that after a SIGTERM or SIGINT it has shut down cleanly (requests
    drained, producer flushed) the process exits with status 0, as the consumers do. uvicorn
    itself raises the signal again once drained, so the process would die of it (status -15),
    which supervisors and scripts cannot tell from being killed mid-request."""

    @classmethod
    def for_app(cls, app: Any, host: str, port: int) -> Server:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE_S
        )
        return cls(config)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
