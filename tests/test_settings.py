"""Settings from the environment: every field from MAILFOLD_<FIELD>, the local services'
addresses following the ports scripts/services uses, and the limits checked against each other."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.settings import RECORD_HEADER_BYTES, Settings, trusted_networks
from service.webhooks import PROVIDERS

KEY = {"MAILFOLD_SECRET_KEY": "k" * 32}


def test_defaults_point_at_the_local_services() -> None:
    s = Settings.from_env(KEY)
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.database_url == "postgresql://mailfold@127.0.0.1:15432/mailfold"


def test_the_services_ports_move_the_default_addresses() -> None:
    s = Settings.from_env({**KEY, "MAILFOLD_KAFKA_PORT": "39092", "MAILFOLD_PG_PORT": "35432"})
    assert s.kafka_bootstrap == "127.0.0.1:39092"
    assert s.database_url == "postgresql://mailfold@127.0.0.1:35432/mailfold"


def test_a_named_address_wins_over_a_port() -> None:
    env = {
        **KEY,
        "MAILFOLD_KAFKA_PORT": "39092",
        "MAILFOLD_KAFKA_BOOTSTRAP": "kafka.internal:9092",
        "MAILFOLD_PG_PORT": "35432",
        "MAILFOLD_DATABASE_URL": "postgresql://app@db.internal/mail",
    }
    s = Settings.from_env(env)
    assert s.kafka_bootstrap == "kafka.internal:9092"
    assert s.database_url == "postgresql://app@db.internal/mail"


def test_typed_fields_are_read_as_their_type() -> None:
    s = Settings.from_env({**KEY, "MAILFOLD_FOLD_BATCH_SIZE": "40", "MAILFOLD_RETRY_AFTER_S": "7"})
    assert s.fold_batch_size == 40 and s.retry_after_s == 7


def test_a_body_limit_that_leaves_no_room_for_record_headers_is_refused() -> None:
    env = {**KEY, "MAILFOLD_MAX_RECORD_BYTES": "1048576", "MAILFOLD_MAX_BODY_BYTES": "1048576"}
    with pytest.raises(SystemExit, match=r"max_body_bytes .* exceeds max_record_bytes"):
        Settings.from_env(env)
    with pytest.raises(ValueError, match="max_webhook_body_bytes"):
        Settings(max_webhook_body_bytes=Settings().max_record_bytes)


@given(st.integers(RECORD_HEADER_BYTES + 1, 64 << 20), st.data())
def test_no_adapter_takes_a_body_its_record_cannot_hold(record_bytes, data) -> None:
    webhook = data.draw(st.integers(1, record_bytes - RECORD_HEADER_BYTES))
    s = Settings(
        max_record_bytes=record_bytes,
        max_body_bytes=min(Settings().max_body_bytes, webhook),
        max_webhook_body_bytes=webhook,
    )
    for adapter in PROVIDERS.values():
        limit = s.webhook_body_limit(adapter.max_body_bytes)
        assert limit > 0 and limit + RECORD_HEADER_BYTES <= record_bytes
        if adapter.max_body_bytes and adapter.max_body_bytes + RECORD_HEADER_BYTES <= record_bytes:
            assert limit == adapter.max_body_bytes


def test_the_defaults_fit_every_adapter_in_a_record_the_local_broker_takes() -> None:
    s = Settings()
    assert s.max_record_bytes <= 4_194_304  # scripts/services: message.max.bytes
    for adapter in PROVIDERS.values():
        assert s.webhook_body_limit(adapter.max_body_bytes) == (
            adapter.max_body_bytes or s.max_webhook_body_bytes
        )


def test_trusted_proxies_are_addresses_or_networks_of_either_family() -> None:
    s = Settings.from_env({**KEY, "MAILFOLD_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1,fd00::/8"})
    assert [str(n) for n in trusted_networks(s.trusted_proxies)] == [
        "10.0.0.0/8",
        "192.0.2.1/32",
        "fd00::/8",
    ]
    with pytest.raises(SystemExit, match="trusted_proxies"):
        Settings.from_env({**KEY, "MAILFOLD_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"})


def test_the_old_forwarded_for_switch_refuses_to_start_naming_its_replacement() -> None:
    with pytest.raises(SystemExit, match="MAILFOLD_TRUSTED_PROXIES"):
        Settings.from_env({**KEY, "MAILFOLD_TRUST_FORWARDED_FOR": "true"})
    assert Settings.from_env({**KEY, "MAILFOLD_TRUST_FORWARDED_FOR": "false"}).trusted_proxies == ""


def test_body_reads_and_their_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Settings(max_body_reads=0)
    with pytest.raises(ValueError):
        Settings(body_timeout_s=0)
