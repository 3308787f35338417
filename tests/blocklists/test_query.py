"""Query names (RFC 5782): IPv4 by octet, IPv6 by nibble, domains as they are, DQS keys."""

from __future__ import annotations

import pytest

from blocklists.query import (
    InvalidTarget,
    normalise_dqs_key,
    normalise_target,
    probe_name,
    query_name,
    reverse_ipv6,
)
from blocklists.zones import ZoneKind

NIBBLES_7F00_2 = "2.0.0.0.0.0.f.7.f.f.f.f" + ".0" * 20


def test_ipv4_is_reversed_by_octet():
    assert query_name(ZoneKind.IP, "192.0.2.1", "zen.spamhaus.org") == "1.2.0.192.zen.spamhaus.org"


def test_rfc5782_ipv4_test_point():
    assert query_name(ZoneKind.IP, "127.0.0.2", "bl.test") == "2.0.0.127.bl.test"


def test_ipv6_is_reversed_by_nibble_all_32_of_them():
    name = query_name(ZoneKind.IP, "::FFFF:7F00:2", "zen.spamhaus.org")
    assert name == f"{NIBBLES_7F00_2}.zen.spamhaus.org"
    assert len(name.removesuffix(".zen.spamhaus.org").split(".")) == 32


def test_ipv6_is_not_reversed_by_16_bit_group():
    labels = reverse_ipv6("2001:db8::1").split(".")
    assert len(labels) == 32
    assert all(len(label) == 1 for label in labels)
    assert labels[:4] == ["1", "0", "0", "0"]
    assert labels[-8:] == ["8", "b", "d", "0", "1", "0", "0", "2"]


def test_domain_is_queried_as_it_is_under_the_zone():
    assert (
        query_name(ZoneKind.DOMAIN, "Example.ORG.", "dbl.spamhaus.org")
        == "example.org.dbl.spamhaus.org"
    )


def test_dqs_key_is_a_label_before_the_dqs_zone():
    name = query_name(ZoneKind.IP, "127.0.0.2", "zen.dq.spamhaus.net", dqs_key="ABCdef12345678")
    assert name == "2.0.0.127.abcdef12345678.zen.dq.spamhaus.net"


def test_probe_names_are_the_negative_test_points():
    assert probe_name(ZoneKind.IP, "bl.test") == "1.0.0.127.bl.test"
    assert probe_name(ZoneKind.DOMAIN, "dbl.spamhaus.org") == "invalid.dbl.spamhaus.org"


@pytest.mark.parametrize("text", ["", "999.1.1.1", "192.0.2.0/24", "example.org", "1.2.3"])
def test_malformed_address_is_refused(text):
    with pytest.raises(InvalidTarget):
        normalise_target(ZoneKind.IP, text)


@pytest.mark.parametrize(
    "text", ["", "localhost", "a..b", "-a.test", "a b.test", "x" * 64 + ".test"]
)
def test_malformed_domain_is_refused(text):
    with pytest.raises(InvalidTarget):
        normalise_target(ZoneKind.DOMAIN, text)


def test_a_name_longer_than_dns_allows_is_refused():
    long_domain = ".".join(["a" * 60] * 4)
    with pytest.raises(InvalidTarget):
        query_name(ZoneKind.DOMAIN, long_domain, "dbl.spamhaus.org")


@pytest.mark.parametrize(
    "key", ["short", "has.dot.in.it", "spaces in key", "x" * 65, "ключ12345678"]
)
def test_dqs_key_must_be_letters_and_digits(key):
    with pytest.raises(InvalidTarget):
        normalise_dqs_key(key)
