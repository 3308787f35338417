"""Knot on 127.0.0.30 serving tests/fixtures/blocklists, a silent relay in front of it on
127.0.0.32, and an organisation whose domains and zones point at them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blocklists.models import BlocklistZone
from dns_records.models import Domain
from dns_records.resolver import Resolver
from mailsec.env import parse_nameserver
from tests.servers import KnotServer, SilentDnsRelay

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "blocklists"
KNOT_ADDRESS = "127.0.0.30"
RELAY_ADDRESS = "127.0.0.32"
DQS_KEY = "dqstestkey0123456789abcdef"
NOBODY = "nothing-is-silenced.invalid"

IP_ZONES = ["zen.spamhaus.org", "bl.test", "refusing.test", "outside.test", "everything.test"]
DOMAIN_ZONES = ["dbl.spamhaus.org", "multi.uribl.com"]


@pytest.fixture(scope="session")
def bl_knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    server = KnotServer(tmp_path_factory.mktemp("bl-knot"), address=KNOT_ADDRESS, source=FIXTURES)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bl_relay(bl_knot: KnotServer) -> Iterator[SilentDnsRelay]:
    """Forwards to the fixture Knot, dropping every question under `relay.silent`."""
    relay = SilentDnsRelay((bl_knot.address, bl_knot.port), NOBODY, address=RELAY_ADDRESS)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def bl_dns(bl_relay: SilentDnsRelay, settings: Any) -> Iterator[SilentDnsRelay]:
    """The product's resolver pointed at the relay (which answers from the fixture Knot)."""
    settings.MAILSEC_DNS_NAMESERVERS = [parse_nameserver(bl_relay.nameserver)]
    settings.MAILSEC_DNS_TIMEOUT = 1.0
    settings.MAILSEC_DNSBL_IP_ZONES = IP_ZONES
    settings.MAILSEC_DNSBL_DOMAIN_ZONES = DOMAIN_ZONES
    bl_relay.silent = NOBODY
    try:
        yield bl_relay
    finally:
        bl_relay.silent = NOBODY


@pytest.fixture
def knot_resolver(bl_knot: KnotServer) -> Resolver:
    return Resolver(nameservers=[parse_nameserver(bl_knot.nameserver)], timeout=1.0)


@pytest.fixture
def acme(org: Any, owner: Any) -> Domain:
    """acme.test (MX addresses listed and clean, v4 and v6) and listed.test in the organisation."""
    domain = Domain.objects.create(organisation=org, name="acme.test")
    Domain.objects.create(organisation=org, name="listed.test")
    return domain


def zone_names(org: Any) -> set[tuple[str, str]]:
    return set(BlocklistZone.objects.filter(organisation=org).values_list("name", "kind"))
