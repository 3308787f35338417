"""Properties over any input: query names invert to their address, the cidr map stays one
well-formed line per entry whatever the reason holds, verdicts are one of three."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from blocklists.cidr_map import CidrEntry, render_cidr_map
from blocklists.query import query_name
from blocklists.verdict import ListingStatus, read_answer
from blocklists.zones import ZoneKind, zone_info
from dns_records.lookups import Lookup, LookupStatus

NOW = datetime(2026, 12, 3, tzinfo=UTC)
LINE = re.compile(r"^\S+\tREJECT [\x20-\x7e]{1,200}$")


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_ipv6_query_names_are_32_nibbles_that_invert(value):
    address = ipaddress.IPv6Address(value)
    labels = query_name(ZoneKind.IP, str(address), "bl.example").split(".")[:-2]
    assert len(labels) == 32
    assert ipaddress.IPv6Address(int("".join(reversed(labels)), 16)) == address


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_query_names_invert(value):
    address = ipaddress.IPv4Address(value)
    labels = query_name(ZoneKind.IP, str(address), "bl.example").split(".")[:-2]
    assert ".".join(reversed(labels)) == str(address)


@given(st.text())
def test_any_reason_renders_one_safe_line(reason):
    text = render_cidr_map([CidrEntry("192.0.2.0/24", reason)], now=NOW)
    lines = text.splitlines()
    assert len(lines) == 2 and text.endswith("\n")
    assert LINE.match(lines[1]), lines[1]


@given(st.lists(st.text(max_size=20), max_size=5), st.sampled_from(list(LookupStatus)))
def test_any_answer_is_one_of_three_states(records, status):
    zone = zone_info("zen.spamhaus.org", ZoneKind.IP)
    verdict = read_answer(zone, Lookup("q", "A", status, records=tuple(records), reason="x"))
    assert verdict.status in set(ListingStatus)
    if verdict.status is ListingStatus.LISTED:
        assert all(
            ipaddress.IPv4Address(r) in ipaddress.IPv4Network("127.0.0.0/8") for r in records
        )
        assert not any(r.startswith("127.255.255.") for r in records)
