"""compose.yaml and the Dockerfile agree with the scripts: the Kafka version of
scripts/kafka/pom.xml, the broker settings of scripts/services, PostgreSQL 15, one image built
once, data on volumes, a healthcheck and a restart policy for every long-running service."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
MAILFOLD = [name for name, s in SERVICES.items() if s["image"].startswith("mailfold:")]
# Settings that name this machine's addresses, ports and folders; compose has its own network.
TOPOLOGY = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"}


def kafka_version() -> str:
    pom = ET.parse(ROOT / "scripts" / "kafka" / "pom.xml").getroot()
    (version,) = pom.iter("{http://maven.apache.org/POM/4.0.0}kafka.version")
    return version.text or ""


def script_broker_settings() -> dict[str, str]:
    """scripts/services' server.properties, without comments and the local topology."""
    text = (ROOT / "scripts" / "services").read_text()
    props = text.split("<<PROPS\n", 1)[1].split("\nPROPS", 1)[0]
    pairs = (line.split("=", 1) for line in props.splitlines() if not line.startswith("#"))
    return {key: value for key, value in pairs if key not in TOPOLOGY}


def compose_broker_settings() -> dict[str, str]:
    env = SERVICES["kafka"]["environment"]
    return {
        k[6:].lower().replace("_", "."): str(v) for k, v in env.items() if k.startswith("KAFKA_")
    }


def test_compose_runs_the_kafka_version_the_scripts_run() -> None:
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_compose_configures_the_broker_as_the_scripts_do() -> None:
    scripts, compose = script_broker_settings(), compose_broker_settings()
    assert "message.max.bytes" in scripts and "process.roles" in scripts
    assert {k: compose.get(k) for k in scripts} == scripts


def test_the_broker_advertises_what_mailfold_is_told_to_bootstrap_from() -> None:
    env = SERVICES["kafka"]["environment"]
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    assert all(
        SERVICES[n]["environment"]["MAILFOLD_KAFKA_BOOTSTRAP"] == advertised for n in MAILFOLD
    )


def test_postgres_is_the_major_version_the_scripts_run() -> None:
    pg_bin = re.search(r"postgresql/(\d+)/bin", (ROOT / "scripts" / "common.sh").read_text())
    assert pg_bin and SERVICES["postgres"]["image"] == f"postgres:{pg_bin[1]}"


def test_kafka_and_postgres_data_live_on_named_volumes() -> None:
    log_dirs = SERVICES["kafka"]["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{log_dirs}" in SERVICES["kafka"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert set(COMPOSE["volumes"]) == {"kafka-data", "postgres-data"}


def test_one_image_is_built_once_and_run_by_every_mailfold_service() -> None:
    assert {"init", "service", "normalizer", "fold", "publisher"} <= set(MAILFOLD)
    assert [name for name in SERVICES if "build" in SERVICES[name]] == ["init"]
    assert len({SERVICES[name]["image"] for name in MAILFOLD}) == 1
    assert all(SERVICES[n]["pull_policy"] == "never" for n in MAILFOLD if n != "init")


@pytest.mark.parametrize("name", [n for n in SERVICES if n != "init"])
def test_every_long_running_service_has_a_healthcheck_and_restarts(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] == "unless-stopped"
    assert service["healthcheck"]["test"] and not service["healthcheck"].get("disable")


def test_the_service_is_checked_on_the_port_it_listens_on() -> None:
    port = Settings().port
    assert SERVICES["service"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(SERVICES["service"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["normalizer", "fold"])
def test_a_consumer_is_checked_on_its_own_metrics_port(name: str) -> None:
    service = SERVICES[name]
    assert service["environment"]["MAILFOLD_METRICS_PORT"]
    assert "MAILFOLD_METRICS_PORT" in " ".join(service["healthcheck"]["test"])
    assert "/readyz" in " ".join(service["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["normalizer", "fold"])
def test_a_consumers_metrics_can_be_scraped_from_the_host(name: str) -> None:
    service = SERVICES[name]
    port = service["environment"]["MAILFOLD_METRICS_PORT"]
    assert service["environment"]["MAILFOLD_METRICS_HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in service["ports"]


def test_the_image_installs_the_locked_dependencies_then_the_wheel_as_a_non_root_user() -> None:
    final = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    lock = final.index("--require-hashes")
    assert lock < final.index("COPY --from=wheel") < final.index("/tmp/dist/*.whl")
    assert " -e " not in final and "--editable" not in final
    assert re.search(r"^USER (?!root)\w+", final, re.MULTILINE)
    assert "\nHEALTHCHECK " in final
