"""One frozen Settings, read once from MAILFOLD_* environment variables (README: "Settings")."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

# What a raw record carries besides its body: Mailfold's own headers (source, account, times,
# ids, metadata keys), the request headers an adapter keeps, and the record batch's framing.
RECORD_HEADER_BYTES = 64 * 1024
TRUTHY = frozenset({"1", "true", "yes", "on"})


def number(name: str, raw: str, kind: str) -> int | float:
    """A numeric setting, or SystemExit naming the variable (never a traceback)."""
    try:
        return int(raw) if kind == "int" else float(raw)
    except ValueError:
        noun = "a whole number" if kind == "int" else "a number"
        raise SystemExit(f"{name} must be {noun}, not {raw!r}") from None


LOG_FORMATS = ("json", "text")


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: str = "postgresql://mailfold@127.0.0.1:15432/mailfold"
    raw_topic: str = "mailfold.raw"
    events_topic: str = "mailfold.events"
    dlq_topic: str = "mailfold.dlq"
    suppressions_topic: str = "mailfold.suppressions"
    topic_partitions: int = 4
    normalize_group: str = "mailfold-normalize"
    fold_group: str = "mailfold-fold"
    host: str = "127.0.0.1"
    port: int = 8000
    # Key for the keyed hash of account secrets and the encryption of provider secrets
    # (32+ random bytes, e.g. hex). When unset, read from secret_key_file.
    secret_key: str = ""
    # Where scripts/dev keeps a generated key for local runs.
    secret_key_file: str = str(Path(__file__).resolve().parent.parent / ".mailfold" / "secret-key")
    max_body_bytes: int = 1_048_576
    # Below max_record_bytes by RECORD_HEADER_BYTES, so an accepted body always fits a record.
    max_webhook_body_bytes: int = 4_128_768
    # The largest raw record: the producer's max request size and the max.message.bytes of the
    # topics ensure_topics creates (the broker's message.max.bytes, scripts/services, is 4 MiB).
    max_record_bytes: int = 4_194_304
    # Request bodies being read at once; one more is answered 503 + Retry-After.
    max_body_reads: int = 64
    # A body not read in full within this many seconds is answered 408.
    body_timeout_s: float = 30.0
    max_events_per_post: int = 1000
    produce_timeout_s: float = 10.0
    max_in_flight: int = 2000
    retry_after_s: int = 5
    fold_batch_size: int = 2000
    fold_batch_wait_ms: int = 200
    db_pool_size: int = 10
    replay_window_s: int = 300
    # Read SNS signing certificates from this folder (by file name) instead of fetching them.
    sns_cert_dir: str = ""
    # Visit an SNS SubscribeURL (SNS hosts only) to confirm a subscription.
    sns_confirm: bool = True
    # Proxies (addresses or CIDR blocks, comma-separated) whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
    log_level: str = "INFO"
    # json: one JSON object per line; text: one readable line (for a terminal).
    log_format: str = "json"
    # A consumer process's own /metrics, /healthz and /readyz listener (0: none), and its address.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_webhook_body_bytes"):
            self.check_body_limit(name, getattr(self, name))
        if self.max_body_reads < 1 or self.body_timeout_s <= 0:
            raise ValueError("max_body_reads and body_timeout_s must be positive")
        trusted_networks(self.trusted_proxies)
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}")

    def check_body_limit(self, name: str, limit: int) -> None:
        """Raise ValueError unless a body of `limit` bytes and its headers fit one raw record."""
        if limit + RECORD_HEADER_BYTES > self.max_record_bytes:
            raise ValueError(
                f"{name} ({limit}) plus {RECORD_HEADER_BYTES} bytes of record headers exceeds "
                f"max_record_bytes ({self.max_record_bytes}); lower it or raise the record limit"
            )

    def webhook_body_limit(self, override: int | None) -> int:
        """The body limit of a provider's webhooks: its adapter's own (SendGrid's batches are
        big), else the service's; never more than a raw record holds."""
        limit = override or self.max_webhook_body_bytes
        return min(limit, self.max_record_bytes - RECORD_HEADER_BYTES)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from MAILFOLD_<FIELD> (upper case); unset ones keep their default."""
        env = os.environ if environ is None else environ
        if env.get("MAILFOLD_TRUST_FORWARDED_FOR", "").strip().lower() in TRUTHY:
            # It believed the leftmost X-Forwarded-For entry from any caller, which anyone can
            # write: refuse to start rather than silently judge allow lists by another address.
            raise SystemExit(
                "MAILFOLD_TRUST_FORWARDED_FOR is replaced by MAILFOLD_TRUSTED_PROXIES: name the "
                "proxies (addresses or CIDR blocks) whose X-Forwarded-For is to be believed"
            )
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"MAILFOLD_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.type in ("int", "float"):
                values[f.name] = number(f"MAILFOLD_{f.name.upper()}", raw, f.type)
            elif f.type == "bool":
                values[f.name] = raw.strip().lower() in TRUTHY
            else:
                values[f.name] = raw
        # The local services scripts/services starts follow MAILFOLD_KAFKA_PORT / MAILFOLD_PG_PORT;
        # so do the defaults that point at them, unless the address itself is named.
        if "kafka_bootstrap" not in values and env.get("MAILFOLD_KAFKA_PORT"):
            port = number("MAILFOLD_KAFKA_PORT", env["MAILFOLD_KAFKA_PORT"], "int")
            values["kafka_bootstrap"] = f"127.0.0.1:{port}"
        if "database_url" not in values and env.get("MAILFOLD_PG_PORT"):
            port = number("MAILFOLD_PG_PORT", env["MAILFOLD_PG_PORT"], "int")
            values["database_url"] = f"postgresql://mailfold@127.0.0.1:{port}/mailfold"
        try:
            settings = cls(**values)  # type: ignore[arg-type]
        except ValueError as exc:
            raise SystemExit(f"settings: {exc}") from exc
        if not settings.secret_key:
            path = Path(settings.secret_key_file)
            if not path.is_file():
                raise SystemExit(
                    "MAILFOLD_SECRET_KEY is not set and no key file is at "
                    f"{path} (scripts/dev creates one for local runs)"
                )
            settings = replace(settings, secret_key=path.read_text().strip())
        return settings


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(spec: str) -> tuple[Network, ...]:
    """Parse MAILFOLD_TRUSTED_PROXIES (comma-separated addresses or CIDR blocks)."""
    try:
        return tuple(
            ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()
        )
    except ValueError as exc:
        raise ValueError(f"trusted_proxies: {exc}") from exc
