"""The per-event machine rules, pinned to the cases MACHINE.md §e6 lists (with their sources)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import machine
from service.events import EventType, Recipient
from service.machine import classify
from service.webhooks.base import RawRecord, make_event

# Text from a fixed alphabet (ASCII, a NUL, controls, non-ASCII, an emoji, a lone surrogate):
# text over all of Unicode makes Hypothesis build its character table on the first draw, which
# its too_slow health check can count against a test on a cold, busy machine.
ALPHABET = "abcxyzABC0189 .,;:/@-_()[]{}\"'\\\x00\t\n\x7féß😀\ud83d"

RECORD = RawRecord(account="acme", source="api", body=b"")
AT = datetime(2025, 6, 1, 12, tzinfo=UTC)
OUTLOOK = ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; Microsoft Outlook 16.0.4266; "
           "ms-office; MSOffice 16)")  # fmt: skip
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
OLD_CHROME = ("Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/57.0.2987.133 Safari/537.36")  # fmt: skip
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"


def event(
    kind: EventType, ua: str | None, ip: str | None = None, flag: bool | None = None
) -> object:
    return make_event(
        RECORD,
        native_type=kind.value,
        type=kind,
        occurred_at=AT,
        recipient=Recipient(email="a@example.com"),
        delivery_id="d1",
        user_agent=ua,
        ip=ip,
        machine=flag,
        machine_reason="provider_flag" if flag else None,
    )


OPEN, CLICK = EventType.OPENED, EventType.CLICKED


@pytest.mark.parametrize(
    ("kind", "ua", "ip", "flag", "expected"),
    [
        # Private Relay egress addresses of the shipped snapshot (service/reference)
        (OPEN, "Mozilla/5.0", "172.225.69.1", None, (True, "apple_mpp", "apple_mpp")),
        (OPEN, "Mozilla/5.0", "2a02:26f7:da80:4000::1", None, (True, "apple_mpp", "apple_mpp")),
        (OPEN, "Mozilla/5.0", "203.0.113.9", None, (True, "scanner_ua", "scanner")),
        (OPEN, " Mozilla/5.0 ", None, None, (True, "apple_mpp", "apple_mpp")),
        (OPEN, GMAIL_PROXY, "66.249.84.1", None, (False, None, "image_proxy_gmail")),
        (OPEN, GMAIL_PREFETCH, "66.249.84.1", None, (True, "gmail_prefetch", "gmail_prefetch")),
        (OPEN, APPLE_MAIL, "198.51.100.7", None, (False, None, "human_client")),
        (OPEN, OUTLOOK, "198.51.100.7", None, (False, None, "human_client")),
        (CLICK, OLD_CHROME, "40.107.22.9", None, (True, "scanner_network", "scanner")),
        (OPEN, OLD_CHROME, "40.107.22.9", None, (False, None, "human_client")),
        (CLICK, YAHOO, "98.136.1.1", None, (True, "scanner_ua", "scanner")),
        (OPEN, YAHOO, "98.136.1.1", None, (False, None, "image_proxy_yahoo")),
        (CLICK, "python-requests/2.31.0", "203.0.113.5", None, (True, "scanner_ua", "scanner")),
        (OPEN, None, None, None, (None, None, "unknown")),
        (OPEN, None, None, False, (False, None, "unknown")),
        (OPEN, GMAIL_PROXY, None, True, (True, "provider_flag", None)),
    ],
)
def test_pinned_cases_get_their_verdicts(
    kind: EventType, ua: str | None, ip: str | None, flag: bool | None, expected: tuple[object, ...]
) -> None:
    out = classify(event(kind, ua, ip, flag))  # type: ignore[arg-type]
    assert (out.machine, out.machine_reason, out.agent_class) == expected
    assert out.provider_machine is flag and out.classifier_version == machine.RULES_VERSION


def test_a_provider_no_does_not_hide_a_scanner_it_missed() -> None:
    out = classify(event(CLICK, "curl/8.0", flag=False))  # type: ignore[arg-type]
    assert (out.machine, out.machine_reason, out.provider_machine) == (True, "scanner_ua", False)


def test_a_bare_mozilla_open_off_apple_egress_is_a_scanner_when_a_list_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "egress.csv"
    csv.write_text("172.224.224.0/27,US,US-CA,Los Angeles\n")
    monkeypatch.setenv("MAILFOLD_APPLE_EGRESS_FILE", str(csv))
    machine.apple_egress.cache_clear()
    try:
        inside = classify(event(OPEN, "Mozilla/5.0", "172.224.224.5"))  # type: ignore[arg-type]
        outside = classify(event(OPEN, "Mozilla/5.0", "203.0.113.9"))  # type: ignore[arg-type]
    finally:
        machine.apple_egress.cache_clear()
    assert (inside.machine, inside.machine_reason) == (True, "apple_mpp")
    assert (outside.machine, outside.machine_reason) == (True, "scanner_ua")


def test_other_events_pass_unchanged() -> None:
    sent = event(EventType.SENT, "curl/8.0")
    assert classify(sent) is sent  # type: ignore[arg-type]


@given(ua=st.text(ALPHABET, max_size=80),
       ip=st.sampled_from([None, "40.107.1.1", "17.1.1.1", "::1", "x"]),
       flag=st.sampled_from([None, True, False]), kind=st.sampled_from([OPEN, CLICK]))  # fmt: skip
def test_classification_is_a_function_of_the_event_alone(
    ua: str, ip: str | None, flag: bool | None, kind: EventType
) -> None:
    a, b = event(kind, ua, ip, flag), event(kind, ua, ip, flag)
    first, second = classify(a), classify(b)  # type: ignore[arg-type]
    assert (first.machine, first.machine_reason) == (second.machine, second.machine_reason)
    assert classify(first).machine == first.machine or first.machine is None  # idempotent verdict
