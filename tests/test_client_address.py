"""The caller's address behind proxies: X-Forwarded-For counts only from trusted proxies, read
right to left, and nothing a caller writes left of the last untrusted hop can change it."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from service.http import client_address
from service.settings import trusted_networks

# Text from a fixed alphabet (ASCII, a NUL, controls, non-ASCII, an emoji, a lone surrogate):
# text over all of Unicode makes Hypothesis build its character table on the first draw, which
# its too_slow health check can count against a test on a cold, busy machine.
ALPHABET = "abcxyzABC0189 .,;:/@-_()[]{}\"'\\\x00\t\n\x7féß😀\ud83d"

TRUSTED = trusted_networks("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.7")

trusted_v4 = st.ip_addresses(network="10.0.0.0/8")
trusted_v6 = st.ip_addresses(network="2001:db8:ffff::/48")
trusted_ip = st.one_of(trusted_v4, trusted_v6, st.just(ipaddress.ip_address("192.0.2.7")))
# Public ranges that no trusted network covers.
untrusted_ip = st.one_of(
    st.ip_addresses(network="198.51.100.0/24"),
    st.ip_addresses(network="203.0.113.0/24"),
    st.ip_addresses(network="2001:db8:1::/48"),
)
# What a caller may write into the header: addresses, junk, empty entries, ports.
anything = st.one_of(
    untrusted_ip.map(str),
    trusted_ip.map(str),
    st.text(ALPHABET, max_size=20).filter(lambda t: "," not in t),
    st.sampled_from(["unknown", "", " ", "1.2.3.4:80", "[2001:db8::1]", "::ffff:10.0.0.1x"]),
)


def header(entries: list[str], lines: int = 1) -> list[str]:
    """`entries` as X-Forwarded-For, split over `lines` header lines as proxies may send it."""
    if not entries:
        return []
    cut = max(1, len(entries) // max(lines, 1))
    return [", ".join(entries[i : i + cut]) for i in range(0, len(entries), cut)]


@given(untrusted_ip, st.lists(anything, max_size=6))
def test_an_untrusted_peer_is_the_caller_whatever_it_forwards(peer, forged) -> None:
    assert client_address(str(peer), header(forged), TRUSTED) == str(peer)


@given(
    st.lists(anything, max_size=5),
    untrusted_ip,
    st.lists(trusted_ip, max_size=4),
    trusted_ip,
    st.integers(1, 3),
)
def test_the_first_untrusted_hop_from_the_right_is_the_caller(
    forged, client, proxies, peer, lines
) -> None:
    entries = [*forged, str(client), *map(str, proxies)]
    assert client_address(str(peer), header(entries, lines), TRUSTED) == str(client)


@given(st.lists(trusted_ip, max_size=5), trusted_ip)
def test_a_chain_of_trusted_proxies_only_gives_its_leftmost(proxies, peer) -> None:
    expected = str(proxies[0]) if proxies else str(peer)
    assert client_address(str(peer), header([str(p) for p in proxies]), TRUSTED) == expected


@given(
    st.lists(anything, max_size=4),
    st.sampled_from(["unknown", "", "1.2.3.4:80", "nonsense", "999.1.1.1"]),
    st.lists(trusted_ip, max_size=3),
    trusted_ip,
)
def test_a_malformed_entry_stops_the_walk_at_the_last_trusted_hop(
    forged, junk, proxies, peer
) -> None:
    entries = [*forged, junk, *map(str, proxies)]
    expected = str(proxies[0]) if proxies else str(peer)
    assert client_address(str(peer), header(entries), TRUSTED) == expected


@given(untrusted_ip.map(str))
def test_no_trusted_proxies_means_the_peer(forwarded) -> None:
    assert client_address("10.1.2.3", [forwarded], ()) == "10.1.2.3"


def test_ipv4_mapped_peers_and_entries_count_as_their_ipv4() -> None:
    assert client_address("::ffff:10.0.0.5", ["::ffff:203.0.113.9"], TRUSTED) == "203.0.113.9"


def test_no_peer_and_a_named_peer_pass_through() -> None:
    assert client_address(None, ["203.0.113.9"], TRUSTED) is None
    assert client_address("testclient", ["203.0.113.9"], TRUSTED) == "testclient"
