"""The built-in zones, and zone names."""

from __future__ import annotations

import pytest

from blocklists.zones import (
    DEFAULT_DOMAIN_ZONES,
    DEFAULT_IP_ZONES,
    InvalidZone,
    ZoneKind,
    default_zones,
    normalise_zone,
    zone_info,
)


def test_defaults_cover_ip_and_domain_lists():
    assert "zen.spamhaus.org" in DEFAULT_IP_ZONES
    assert "b.barracudacentral.org" in DEFAULT_IP_ZONES
    assert {"dbl.spamhaus.org", "multi.surbl.org", "multi.uribl.com"} <= set(DEFAULT_DOMAIN_ZONES)


def test_shut_down_lists_are_not_defaults():
    # SORBS closed in 2024: a dead list's lapsed domain can come to answer for everything.
    assert "dnsbl.sorbs.net" not in DEFAULT_IP_ZONES


def test_spamhaus_zones_have_dqs_zones_and_a_delisting_page():
    zen = zone_info("zen.spamhaus.org", ZoneKind.IP)
    assert zen.dqs_zone == "zen.dq.spamhaus.net"
    assert zone_info("dbl.spamhaus.org", ZoneKind.DOMAIN).dqs_zone == "dbl.dq.spamhaus.net"
    assert zen.delisting("192.0.2.1").endswith("192.0.2.1")


def test_settings_lists_replace_the_defaults():
    zones = default_zones(["Bl.Example.", "zen.spamhaus.org"], ["dbl.example"])
    assert [(z.name, z.kind) for z in zones] == [
        ("bl.example", ZoneKind.IP),
        ("zen.spamhaus.org", ZoneKind.IP),
        ("dbl.example", ZoneKind.DOMAIN),
    ]


@pytest.mark.parametrize("text", ["", "nodot", "a..b", "-bad.example", "sp ace.example", "x.y/z"])
def test_malformed_zone_names_are_refused(text):
    with pytest.raises(InvalidZone):
        normalise_zone(text)
