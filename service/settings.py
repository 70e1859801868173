"""One frozen Settings, read once from MAILFOLD_* environment variables (README: "Settings")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path


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
    max_webhook_body_bytes: int = 4_194_304
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
    trust_forwarded_for: bool = False
    log_level: str = "INFO"
    # A consumer process's own /metrics listener on 127.0.0.1 (0: none).
    metrics_port: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from MAILFOLD_<FIELD> (upper case); unset ones keep their default."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"MAILFOLD_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.type == "int":
                values[f.name] = int(raw)
            elif f.type == "float":
                values[f.name] = float(raw)
            elif f.type == "bool":
                values[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            else:
                values[f.name] = raw
        # The local services scripts/services starts follow MAILFOLD_KAFKA_PORT / MAILFOLD_PG_PORT;
        # so do the defaults that point at them, unless the address itself is named.
        if "kafka_bootstrap" not in values and env.get("MAILFOLD_KAFKA_PORT"):
            values["kafka_bootstrap"] = f"127.0.0.1:{int(env['MAILFOLD_KAFKA_PORT'])}"
        if "database_url" not in values and env.get("MAILFOLD_PG_PORT"):
            port = int(env["MAILFOLD_PG_PORT"])
            values["database_url"] = f"postgresql://mailfold@127.0.0.1:{port}/mailfold"
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.secret_key:
            path = Path(settings.secret_key_file)
            if not path.is_file():
                raise SystemExit(
                    "MAILFOLD_SECRET_KEY is not set and no key file is at "
                    f"{path} (scripts/dev creates one for local runs)"
                )
            settings = replace(settings, secret_key=path.read_text().strip())
        return settings
