"""Machine opens and clicks told apart from people's, per event (MACHINE.md §e2).

The provider's own flag decides first (`provider_machine` keeps it); then recognised agents (Apple
Mail Privacy Protection's bare user agent, Gmail's prefetch agent, announced scanners and HTTP
libraries), then scanner networks for clicks only; Gmail and Yahoo image proxies and real mail
clients are people. The whole-set rules (click bursts, too fast after delivery) run in the fold,
over a recipient's set of events (queries/machine.sql).
Reference data lives in service/reference/ (dated, replaceable); nothing is fetched at run time.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path

from service.events import Event, EventType
from service.resources import REFERENCE

RULES_VERSION = "2026-11-23.2"

# Announced bots and HTTP libraries (device-detector bots.yml, crawler-user-agents, warmbly
# SCANNER_UA_MARKERS, craft-campaign#546); lower-cased substrings. Not browsers, so a match is
# low-risk. Gateway brand names (mimecast, proofpoint, ...) are left out: no source showed them
# in a User-Agent (MACHINE.md b5).
SCANNER_MARKERS = (
    "barracuda sentinel", "microsoftpreview", "bingpreview", "google-safety", "virustotal",
    "kaspersky lab cfr link resolver", "chrome privacy preserving prefetch proxy",
    "slack-imgproxy", "slackbot", "whatsapp", "telegrambot", "skypeuripreview",
    "python-requests", "curl/", "wget/", "go-http-client", "okhttp", "java/", "headless",
    "phantomjs",
)  # fmt: skip
GMAIL_PREFETCH = "edge/12.246 mozilla/5.0"  # GMass, Bird: Gmail's prefetch bot
GMAIL_PROXY = ("googleimageproxy", "via ggpht.com")  # the image proxy acting for a reader
YAHOO_PROXY = "yahoomailproxy"  # an image cache on opens, a content fetcher on clicks
MAIL_CLIENTS = ("ms-office", "microsoft outlook", "thunderbird", "applewebkit", "gecko/", "chrome/")


@dataclass(frozen=True, slots=True)
class Verdict:
    machine: bool | None
    reason: str | None
    agent_class: str | None


def _networks(path: Traversable) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for line in path.read_text().splitlines():
        cidr = line.split(",", 1)[0].strip()
        if cidr and not cidr.startswith("#"):
            nets.append(ipaddress.ip_network(cidr, strict=False))
    return tuple(nets)


@lru_cache(maxsize=1)
def apple_egress() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    path = os.environ.get("MAILFOLD_APPLE_EGRESS_FILE")
    return _networks(Path(path) if path else REFERENCE / "apple_egress_ranges.csv")


@lru_cache(maxsize=1)
def scanner_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    path = os.environ.get("MAILFOLD_SCANNER_NETWORKS_FILE")
    return _networks(Path(path) if path else REFERENCE / "microsoft_scanner_networks.txt")


def _in(
    ip: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    return any(address in net for net in networks)


def _agent_rules(kind: EventType, ua: str, ip: str | None) -> Verdict | None:
    """Rules 3-5: recognised agents and networks; None when nothing decides."""
    low = ua.lower()
    is_open = kind is EventType.OPENED
    if is_open and ua.strip() == "Mozilla/5.0":
        egress = apple_egress()
        if not egress or not ip or _in(ip, egress):
            return Verdict(True, "apple_mpp", "apple_mpp")
        return Verdict(True, "scanner_ua", "scanner")  # a bare Mozilla/5.0 is never a real client
    if GMAIL_PREFETCH in low:
        return Verdict(True, "gmail_prefetch", "gmail_prefetch")
    if any(marker in low for marker in SCANNER_MARKERS) or (not is_open and YAHOO_PROXY in low):
        return Verdict(True, "scanner_ua", "scanner")
    if not is_open and _in(ip, scanner_networks()):
        return Verdict(True, "scanner_network", "scanner")
    if is_open and any(mark in low for mark in GMAIL_PROXY):
        return Verdict(False, None, "image_proxy_gmail")
    if is_open and YAHOO_PROXY in low:
        return Verdict(False, None, "image_proxy_yahoo")
    if any(mark in low for mark in MAIL_CLIENTS):
        return Verdict(False, None, "human_client")
    return None


def verdict(event: Event) -> Verdict:
    """The effective verdict on one open or click (rule order as in MACHINE.md §e2)."""
    if event.machine is True:  # rule 1: the provider's flag
        return Verdict(True, event.machine_reason or "provider_flag", event.agent_class)
    # The provider's own network verdict (Mailgun bot "", ...) never hides an agent it missed.
    decided = _agent_rules(event.type, event.user_agent, event.ip) if event.user_agent else None
    if decided is not None:
        return decided
    if event.machine is False:  # rule 2: the provider said "no" and nothing here says otherwise
        return Verdict(False, event.machine_reason, event.agent_class or "unknown")
    return Verdict(None, None, event.agent_class or "unknown")  # rule 6: nothing tells


def classify(event: Event) -> Event:
    """The event with `machine`, `machine_reason`, `agent_class` decided and the provider's word
    kept in `provider_machine`; events other than opens and clicks pass unchanged."""
    if event.type not in (EventType.OPENED, EventType.CLICKED):
        return event
    v = verdict(event)
    return replace(
        event,
        provider_machine=event.machine,
        machine=v.machine,
        machine_reason=v.reason,
        agent_class=v.agent_class,
        classifier_version=RULES_VERSION,
    )
