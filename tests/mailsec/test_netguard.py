"""The guard for outgoing connections, as a function: no address here is ever connected to."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsec.netguard import address_allowed, embedded_ipv4, parse_address, refuse_reason

REFUSED = [
    # IPv4 special purpose
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "'this network'"),
    ("10.1.2.3", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("127.0.0.1", "loopback"),
    ("127.0.0.15", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.9", "IETF protocol assignments"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "6to4 relay"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.7", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    # IPv6 special purpose
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("100::1", "discard-only"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "IETF protocol assignments"),
    ("2001:10::1", "IETF protocol assignments"),
    ("5f00::1", "SRv6"),
    ("4000::1", "not global unicast"),
    ("::2:0:0:1", "not global unicast"),
    # IPv4 embedded in IPv6: the embedded address is named
    ("::ffff:127.0.0.1", "embeds 127.0.0.1, which is loopback"),
    ("::ffff:7f00:1", "embeds 127.0.0.1, which is loopback"),
    ("::ffff:169.254.169.254", "embeds 169.254.169.254, which is link-local"),
    ("::127.0.0.1", "embeds 127.0.0.1, which is loopback"),
    ("::10.0.0.1", "embeds 10.0.0.1, which is private"),
    ("::ffff:0:10.0.0.1", "embeds 10.0.0.1, which is private"),
    ("64:ff9b::a00:1", "embeds 10.0.0.1, which is private"),
    ("64:ff9b::7f00:1", "embeds 127.0.0.1, which is loopback"),
    ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254, which is link-local"),
    ("64:ff9b:1::a00:1", "embeds 10.0.0.1, which is private"),
    ("2002:c0a8:0101::1", "embeds 192.168.1.1, which is private"),
    ("2002:7f00:1::1", "embeds 127.0.0.1, which is loopback"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "embeds 192.0.2.45, which is documentation"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "embeds 127.0.0.1, which is loopback"),
    ("2001:0:a00:1::1", "embeds 10.0.0.1, which is private"),  # Teredo server
    # Transition forms refused even when what they carry is global
    ("::ffff:8.8.8.8", "IPv4-mapped"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2002:808:808::1", "6to4"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "Teredo"),
    # Not addresses as written: the system resolver would read some of them as loopback
    ("[::]", "not an IP address"),
    ("[::1]", "not an IP address"),
    ("127.1", "not an IP address"),
    ("0x7f000001", "not an IP address"),
    ("2130706433", "not an IP address"),
    ("017.0.0.1", "not an IP address"),
    ("localhost", "not an IP address"),
    (" 8.8.8.8", "not an IP address"),
    ("8.8.8.8\n", "not an IP address"),
    ("fe80::1%eth0", "not an IP address"),
    ("", "not an IP address"),
    ("8.8.8.8/32", "not an IP address"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "64:ff9b::808:808",  # NAT64 well-known prefix carrying a global address
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_with_its_reason(address: str, reason: str) -> None:
    assert reason in refuse_reason(address)
    assert address_allowed(address) is False


@pytest.mark.parametrize("address", ALLOWED)
def test_global_address_allowed(address: str) -> None:
    assert refuse_reason(address) == ""
    assert address_allowed(address) is True


def test_an_allowed_network_allows_what_it_holds() -> None:
    networks = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    assert address_allowed("127.0.0.15", networks)
    assert address_allowed("fd00::25", networks)
    assert not address_allowed("10.0.0.1", networks)


def test_an_allowed_network_does_not_allow_embedded_spellings_of_its_addresses() -> None:
    networks = [ipaddress.ip_network("127.0.0.0/8")]
    for spelling in ["::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"]:
        assert not address_allowed(spelling, networks), spelling


def test_an_allowed_ipv6_prefix_allows_its_embedded_addresses() -> None:
    networks = [ipaddress.ip_network("64:ff9b::/96")]
    assert address_allowed("64:ff9b::a00:1", networks)


def test_an_allowed_network_does_not_loosen_parsing() -> None:
    assert not address_allowed("127.1", [ipaddress.ip_network("127.0.0.0/8")])


def test_embedded_ipv4_of_each_transition_form() -> None:
    def embedded(text: str) -> list[str]:
        address = parse_address(text)
        assert address is not None
        return [str(inner) for inner in embedded_ipv4(address)]

    assert embedded("::ffff:1.2.3.4") == ["1.2.3.4"]
    assert embedded("::1.2.3.4") == ["1.2.3.4"]
    assert embedded("::ffff:0:1.2.3.4") == ["1.2.3.4"]
    assert embedded("64:ff9b::1.2.3.4") == ["1.2.3.4"]
    assert embedded("64:ff9b:1::1.2.3.4") == ["1.2.3.4"]
    assert embedded("2002:102:304::1") == ["1.2.3.4"]
    assert embedded("2001:0:4136:e378:8000:63bf:3fff:fdd2") == ["65.54.227.120", "192.0.2.45"]
    assert embedded("::1") == []
    assert embedded("::") == []
    assert embedded("8.8.8.8") == []
    assert embedded("2606:4700::1") == []


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses())
def test_allowed_only_where_python_agrees_it_is_global(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """Never looser than the standard library (which, depending on its version, is looser
    than the guard for multicast and the IPv6 transition forms)."""
    if address_allowed(str(address)) and str(address) not in ALLOWED:
        embedded = embedded_ipv4(address)
        assert address.is_global or embedded, address
        assert all(inner.is_global for inner in embedded), address


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_every_spelling_of_a_refused_ipv4_address_is_refused(
    address: ipaddress.IPv4Address,
) -> None:
    if address_allowed(str(address)):
        return
    value = int(address)
    spellings = [
        f"::ffff:{address}",
        f"::{address}",
        f"::ffff:0:{address}",
        str(ipaddress.IPv6Address((0x64FF9B << 96) | value)),
        str(ipaddress.IPv6Address((0x64FF9B0001 << 80) | value)),
        str(ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)),
        str(ipaddress.IPv6Address((0x20010000 << 96) | (value ^ 0xFFFFFFFF))),
    ]
    for spelling in spellings:
        assert not address_allowed(spelling), spelling


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_gets_an_answer(text: str) -> None:
    assert isinstance(address_allowed(text), bool)
