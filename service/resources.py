"""The package data: schema.sql, migrations, the named queries, the event's JSON Schema, reference
data.

A wheel carries schema.sql, migrations/, queries.sql, queries/ and schemas/ inside this package,
under data/ (pyproject.toml maps them there at build time); a checkout keeps them at the
repository's root.
Both are found through importlib.resources, so an installed wheel runs as a clone does.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

PACKAGE = files("service")
REFERENCE = PACKAGE / "reference"


def data() -> Traversable:
    """The folder holding schema.sql, migrations/, queries.sql, queries/ and schemas/."""
    packaged = PACKAGE / "data"
    return packaged if packaged.is_dir() else PACKAGE / ".."


def query_files() -> list[Traversable]:
    """queries.sql, then queries/<area>.sql in name order."""
    folder = data() / "queries"
    areas = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [data() / "queries.sql", *areas]
