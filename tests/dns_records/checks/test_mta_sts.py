"""MTA-STS policy parsing and MX matching (RFC 8461), and the network gate, with no server."""

from __future__ import annotations

import ipaddress

import pytest

from dns_records.checks.mta_sts import MtaStsPolicyError, mx_matches, parse_policy
from dns_records.web import address_allowed


def test_parse_policy_reads_every_mx_pattern():
    policy = parse_policy(
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n"
    )
    assert (policy.mode, policy.mx, policy.max_age) == (
        "enforce",
        ("mail.example.com", "*.example.net"),
        86400,
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", "version: STSv1"),
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode 'strict'"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmax_age: 86400\n", "must list mx"),
        ("version: STSv1\nmode enforce\n", "not key: value"),
    ],
)
def test_invalid_policies_are_refused(text, reason):
    with pytest.raises(MtaStsPolicyError, match=reason):
        parse_policy(text)


def test_mode_none_needs_no_mx():
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").mx == ()


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mail.example.com", "MAIL.example.com.", True),
        ("*.example.net", "mx1.example.net", True),
        ("*.example.net", "a.b.example.net", False),
        ("*.example.net", "example.net", False),
        ("mail.example.com", "mail2.example.com", False),
    ],
)
def test_mx_patterns_match_one_label_wildcards(pattern, host, matches):
    assert mx_matches(pattern, host) is matches


def test_only_global_or_allowed_addresses_may_be_contacted(settings):
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    assert address_allowed("8.8.8.8") is True
    assert address_allowed("10.1.2.3") is False
    assert address_allowed("127.0.0.15") is False
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert address_allowed("10.1.2.3") is True


def test_the_fetch_guard_is_the_core_guard_with_the_setting(settings):
    """Embedded and shorthand spellings of loopback are refused; the table is in
    tests/mailsec/test_netguard.py."""
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    assert address_allowed("127.0.0.15") is True
    for spelling in ["::ffff:127.0.0.15", "64:ff9b::7f00:f", "2002:7f00:f::1", "127.15"]:
        assert address_allowed(spelling) is False, spelling
