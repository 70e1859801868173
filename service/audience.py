"""Who opened or clicked, as the report builder groups them: the mail client or browser family
read from the user agent, and the country of the address.

The family comes from `ua-parser` (the uap-core rules, maintained upstream) and the country from
`geoip2fast`, whose IPv4 and IPv6 country database ships inside the package: nothing is fetched
at run time. Both answers are cached per distinct value, because a delivery's opens repeat a few
hundred user agents and proxy addresses.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from ua_parser import parse_user_agent

# ua-parser's answer when no rule matched
UNKNOWN_FAMILY = "Other"
# geoip2fast's code for private, reserved and unlisted addresses
NO_COUNTRY = "--"
MAX_AGENT = 1024  # longer user agents are read by their first 1024 characters
ENGAGEMENT = frozenset({"opened", "clicked"})


@functools.lru_cache(maxsize=1)
def _countries() -> Any:
    from geoip2fast import GeoIP2Fast  # loads the database (about 0.1 s, 60 MB) on first use

    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")


@functools.lru_cache(maxsize=65536)
def client_of(user_agent: str | None) -> str | None:
    """The mail client or browser family of `user_agent` ("Apple Mail", "Outlook",
    "GmailImageProxy", "Chrome"...), or None when there is none or no rule knows it."""
    if not user_agent or not user_agent.strip():
        return None
    found = parse_user_agent(user_agent[:MAX_AGENT])
    if found is None or found.family == UNKNOWN_FAMILY:
        return None
    return str(found.family)


@functools.lru_cache(maxsize=65536)
def country_of(ip: str | None) -> str | None:
    """The English name of the country `ip` is in, or None for a private, reserved, unlisted or
    unreadable address."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    found = _countries().lookup(str(address))
    code = getattr(found, "country_code", NO_COUNTRY)
    if not code or code == NO_COUNTRY or getattr(found, "is_private", False):
        return None
    return str(found.country_name)


def audience(type_: str, user_agent: str | None, ip: str | None) -> tuple[str | None, str | None]:
    """(client, country) of an open or click; other events have neither."""
    if type_ not in ENGAGEMENT:
        return None, None
    return client_of(user_agent), country_of(ip)
