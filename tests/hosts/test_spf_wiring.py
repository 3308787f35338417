"""Managed hosts join the SPF check: a host serving the domain that the SPF record does not
authorise is a `fail`, and the suggested record makes it pass. Against a Knot on 127.0.0.81
serving a fixture zone written here; every lookup goes there."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dns_records.context import check_contexts
from dns_records.models import CheckState, Domain
from dns_records.services import domains_check
from dns_records.zonefile import zone_line
from hosts.models import Host
from mailsec.env import parse_nameserver
from tests.servers import KnotServer

KNOT_ADDRESS = "127.0.0.81"
ZONE = """$ORIGIN hosted.test.
$TTL 300
@    SOA  ns1.hosted.test. hostmaster.hosted.test. {serial} 7200 3600 1209600 300
@    NS   ns1.hosted.test.
ns1  A    127.0.0.81
@    MX   10 mx1.hosted.test.
mx1  A    192.0.2.25
{spf}
"""


def write_zone(directory: Path, spf_line: str, serial: int) -> None:
    (directory / "hosted.test.zone").write_text(ZONE.format(serial=serial, spf=spf_line))


@pytest.fixture
def knot(tmp_path: Path, settings: Any) -> Iterator[KnotServer]:
    source = tmp_path / "zones"
    source.mkdir()
    write_zone(source, '@ TXT "v=spf1 mx -all"', 1)
    server = KnotServer(tmp_path / "knot", address=KNOT_ADDRESS, source=source)
    (tmp_path / "knot").mkdir()
    server.start()
    settings.MAILSEC_DNS_NAMESERVERS = [parse_nameserver(server.nameserver)]
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def domain(org: Any) -> Domain:
    return Domain.objects.create(organisation=org, name="hosted.test")


def spf_state(domain: Domain) -> CheckState:
    domains_check(domain_ids=[domain.pk])
    return CheckState.objects.get(domain=domain, name="spf")


def test_context_holds_the_addresses_of_the_hosts_serving_the_domain(
    org: Any, other_org: Any, domain: Domain
) -> None:
    host = Host.objects.create(
        organisation=org, name="mx2.hosted.test", address="198.51.100.7",
        facts={"addresses": ["2001:db8::7", "198.51.100.7", "not an address"]},
    )  # fmt: skip
    host.domains.add(domain)
    Host.objects.create(organisation=org, name="idle.hosted.test", address="198.51.100.8")
    by_name = Host.objects.create(organisation=org, name="named.hosted.test", address="mx.example")
    by_name.domains.add(domain)
    # Another organisation's host cannot put addresses into this domain's check.
    theirs = Domain.objects.create(organisation=other_org, name="hosted.test")
    stranger = Host.objects.create(organisation=other_org, name="x.test", address="203.0.113.9")
    stranger.domains.add(theirs)
    contexts = check_contexts([domain, theirs])
    assert contexts[domain.pk].host_addresses == ("198.51.100.7", "2001:db8::7")
    assert contexts[theirs.pk].host_addresses == ("203.0.113.9",)


def test_a_host_the_spf_record_does_not_authorise_fails_until_the_suggestion_is_published(
    org: Any, domain: Domain, knot: KnotServer
) -> None:
    before = spf_state(domain)
    # Without managed hosts the MX host is the sender, and the record authorises it.
    assert before.status == "ok", before.summary

    host = Host.objects.create(organisation=org, name="out.hosted.test", address="198.51.100.7")
    host.domains.add(domain)
    failed = spf_state(domain)
    assert failed.status == "fail", failed.summary
    assert "198.51.100.7" in failed.summary or "198.51.100.7" in str(failed.details)
    suggestion = failed.details["suggested_record"]
    assert suggestion["name"] == "hosted.test"
    assert "ip4:198.51.100.7" in suggestion["value"]

    # Publish the suggestion as the domain page offers it, and check again.
    write_zone(
        knot.directory / "zones", zone_line(suggestion["name"], "TXT", suggestion["value"]), 2
    )
    knot.reload()
    fixed = spf_state(domain)
    assert fixed.status == "ok", fixed.summary
