"""The only outbound requests Mailfold makes: Amazon SNS signing certificates and subscription
confirmations, and only to Amazon SNS's own hosts (service/webhooks/sns.py decides which URLs).

Certificates are cached per URL. With `MAILFOLD_SNS_CERT_DIR` set, certificates are read from
that folder by file name instead (machines without internet access, and the tests).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from service.errors import Rejected, Unavailable
from service.webhooks import sns

log = logging.getLogger("mailfold.sns")
MAX_BYTES = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead off SNS's hosts: refuse to follow any."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _get(url: str, timeout: float) -> bytes:
    with _OPENER.open(url, timeout=timeout) as response:
        data: bytes = response.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError("response too large")
    return data


class SnsClient:
    def __init__(self, cert_dir: str = "", timeout: float = 5.0) -> None:
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._timeout = timeout
        self._certificates: dict[str, bytes] = {}

    async def fetch_certificate(self, url: str) -> bytes:
        # The adapter has matched the URL to the topic's region; this is the last line before
        # any network access, so the shape is checked again here.
        if sns.url_home(url) is None or not sns.is_certificate_path(url):
            raise Rejected("ses: SigningCertURL is not an Amazon SNS certificate URL")
        cached = self._certificates.get(url)
        if cached is not None:
            return cached
        try:
            if self._cert_dir is not None:
                name = PurePosixPath(urlsplit(url).path).name
                pem = (self._cert_dir / name).read_bytes()
            else:
                pem = await asyncio.to_thread(_get, url, self._timeout)
        except (OSError, ValueError) as exc:
            # Our failure to fetch is transient: answer 503 so SNS retries.
            raise Unavailable(
                f"ses: signing certificate unavailable: {type(exc).__name__}"
            ) from exc
        self._certificates[url] = pem
        return pem

    async def confirm_subscription(self, url: str) -> None:
        if sns.url_home(url) is None:
            raise Rejected("ses: SubscribeURL is not an Amazon SNS URL")
        try:
            await asyncio.to_thread(_get, url, self._timeout)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"ses: confirming the subscription failed: {exc!r}") from exc
        log.info("confirmed SNS subscription")
