"""Managed hosts' addresses are IP blocklist targets of their organisation: reported addresses,
else the address itself, else its name's A and AAAA records (from a Knot on 127.0.0.82)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blocklists import targets
from blocklists.zones import ZoneKind
from dns_records.models import Domain
from dns_records.resolver import Resolver
from hosts.models import Host
from mailsec.env import parse_nameserver
from tests.servers import KnotServer

KNOT_ADDRESS = "127.0.0.82"
ZONE = """$ORIGIN hosts.test.
$TTL 300
@    SOA  ns1.hosts.test. hostmaster.hosts.test. 1 7200 3600 1209600 300
@    NS   ns1.hosts.test.
ns1  A    127.0.0.82
mx3  A    192.0.2.33
mx3  AAAA 2001:db8::33
"""


@pytest.fixture
def resolver(tmp_path: Path) -> Iterator[Resolver]:
    source = tmp_path / "zones"
    source.mkdir()
    (source / "hosts.test.zone").write_text(ZONE)
    (tmp_path / "knot").mkdir()
    server = KnotServer(tmp_path / "knot", address=KNOT_ADDRESS, source=source)
    server.start()
    try:
        yield Resolver(nameservers=[parse_nameserver(server.nameserver)])
    finally:
        server.stop()


def ip_targets(found: targets.FoundTargets) -> set[tuple[str, str, int | None]]:
    return {(t.value, t.source, t.domain_id) for t in found.targets if t.kind == ZoneKind.IP}


def test_host_address_provider_is_registered() -> None:
    assert targets.host_address_targets in targets._providers


def test_every_host_address_of_the_organisation_is_a_target(
    org: Any, other_org: Any, resolver: Resolver
) -> None:
    domain = Domain.objects.create(organisation=org, name="acme.test")
    by_ip = Host.objects.create(organisation=org, name="mx1.acme.test", address="198.51.100.7")
    by_ip.domains.add(domain)
    Host.objects.create(
        organisation=org, name="mx2.acme.test", address="mx2.acme.test",
        facts={"addresses": ["203.0.113.5", "2001:db8::5"]},
    )  # fmt: skip
    Host.objects.create(organisation=org, name="mx3.acme.test", address="mx3.hosts.test")
    Host.objects.create(organisation=other_org, name="theirs.test", address="198.51.100.99")

    found = targets.host_address_targets(org, resolver, 4)

    assert found.errors == []
    assert ip_targets(found) == {
        ("198.51.100.7", "host mx1.acme.test", domain.pk),
        ("203.0.113.5", "host mx2.acme.test", None),
        ("2001:db8::5", "host mx2.acme.test", None),
        ("192.0.2.33", "host mx3.acme.test", None),
        ("2001:db8::33", "host mx3.acme.test", None),
    }


def test_a_name_that_cannot_be_resolved_is_an_error_not_a_missing_target(
    org: Any, resolver: Resolver
) -> None:
    Host.objects.create(organisation=org, name="mx4.acme.test", address="mx4.elsewhere.test")
    found = targets.host_address_targets(org, resolver, 4)
    assert found.targets == []
    assert found.errors and "mx4.elsewhere.test" in found.errors[0]
