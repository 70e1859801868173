"""The generated data on disk: webhook bodies of the seeded send, cached by seed and size, and
length-prefixed files of blobs (request bodies, pre-encoded requests) that load generators read.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import astuple
from pathlib import Path

from bench import generator
from service.adapters import derive
from service.events import Event
from service.webhooks.base import RawRecord

EVENTS_PER_BODY = 1000
_LEN = struct.Struct("<I")


def write_blobs(path: Path, blobs: Iterable[bytes]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for blob in blobs:
            out.write(_LEN.pack(len(blob)))
            out.write(blob)
    tmp.replace(path)


def read_blobs(path: Path) -> list[bytes]:
    data = path.read_bytes()
    blobs, at = [], 0
    while at < len(data):
        (size,) = _LEN.unpack_from(data, at)
        blobs.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return blobs


def bodies(folder: Path, seed: int, mix: generator.Mix) -> Path:
    """A file of SendGrid webhook bodies of 1,000 events each, generated once per seed and mix."""
    tag = hashlib.blake2b(repr((seed, astuple(mix))).encode(), digest_size=6).hexdigest()
    path = folder / f"sendgrid-{seed}-{tag}.bin"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        events = generator.send_events(seed, mix)
        whole = len(events) - len(events) % EVENTS_PER_BODY
        write_blobs(path, map(generator.body, generator.batches(events[:whole], EVENTS_PER_BODY)))
    return path


def events_of(body: bytes, account: str) -> list[Event]:
    """The canonical events a body becomes (what the normalizer produces from it)."""
    return derive(RawRecord(account=account, source="sendgrid", body=body))
