"""The installed Mailfold's version, as `mailfold --version` and `mailfold_build_info` show it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("mailfold")
except PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "0+unknown"
