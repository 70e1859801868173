"""The tree tells the data flow: `service` imports neither `consumers` nor the command, and the
consumers do not import the command that starts them."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported(package: str) -> set[tuple[str, str]]:
    """(module file, imported top-level package) for every import under a package."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {(str(path.relative_to(ROOT)), name.split(".")[0]) for name in names}
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("service", {"consumers", "mailfold"}), ("consumers", {"mailfold"})],
)
def test_a_lower_layer_never_imports_a_higher_one(package, forbidden):
    wrong = sorted(
        f"{path} imports {name}" for path, name in imported(package) if name in forbidden
    )
    assert wrong == []


def test_the_read_api_holds_no_kafka_writer():
    """service/read answers from PostgreSQL only; a process that writes Kafka is a consumer."""
    users = sorted(p for p, name in imported("service/read") if name in {"aiokafka"})
    kafka = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "service" / "read").rglob("*.py")
        if "kafka." in path.read_text() or "import kafka" in path.read_text()
    ]
    assert users == [] and kafka == []
