"""Settings from the environment: every field from MAILFOLD_<FIELD>, and the local services'
addresses following the ports scripts/services uses."""

from __future__ import annotations

from service.settings import Settings

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
