"""Source names by reverse DNS against a real Knot on 127.0.0.50 serving a fixture reverse zone."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator

import pytest
from django.utils import timezone

from dns_records.resolver import Resolver
from mailsec.env import Nameserver
from reports.models import SourceInfo
from reports.sources import (
    REFRESH_AFTER,
    RETRY_ERROR_AFTER,
    PtrStatus,
    reverse_name,
    sources_due,
    sources_resolve,
)
from tests.reports.factories import make_report, make_source, own
from tests.servers import KnotServer

ADDRESS = "127.0.0.50"

ZONES = {
    "2.0.192.in-addr.arpa": """$ORIGIN 2.0.192.in-addr.arpa.
$TTL 300
@   SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300
@   NS  ns1.example.test.
1   PTR mail.example.test.
2   PTR liar.example.test.
5   PTR relay.example.test.
""",
    "example.test": """$ORIGIN example.test.
$TTL 300
@     SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300
@     NS  ns1.example.test.
ns1   A   127.0.0.50
mail  A   192.0.2.1
liar  A   198.51.100.99
relay A   192.0.2.5
""",
}


@pytest.fixture(scope="module")
def rdns_knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    zones = tmp_path_factory.mktemp("rdns-zones")
    for name, text in ZONES.items():
        (zones / f"{name}.zone").write_text(text)
    files: dict[str, str | None] = {name: f"{name}.zone" for name in ZONES}
    # A reverse zone whose server fails: Knot answers SERVFAIL for it.
    files["100.51.198.in-addr.arpa"] = None
    server = KnotServer(
        tmp_path_factory.mktemp("rdns-knot"), address=ADDRESS, source=zones, zone_files=files
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def resolver(rdns_knot: KnotServer) -> Resolver:
    return Resolver([Nameserver(ADDRESS, rdns_knot.port)], timeout=2.0)


@pytest.fixture
def silent_resolver() -> Iterator[Resolver]:
    """A name server that receives every question and answers none: each lookup times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ADDRESS, 0))
    try:
        yield Resolver([Nameserver(ADDRESS, sock.getsockname()[1])], timeout=0.3)
    finally:
        sock.close()


def test_a_forward_confirmed_name_is_ok(resolver):
    name = reverse_name("192.0.2.1", resolver)
    assert (name.ptr, name.ptr_status) == ("mail.example.test", PtrStatus.OK)


def test_a_name_that_does_not_point_back_is_unverified(resolver):
    name = reverse_name("192.0.2.2", resolver)
    assert (name.ptr, name.ptr_status) == ("liar.example.test", PtrStatus.UNVERIFIED)


def test_nxdomain_is_none_with_no_name(resolver):
    name = reverse_name("192.0.2.3", resolver)
    assert (name.ptr, name.ptr_status) == ("", PtrStatus.NONE)


def test_servfail_is_error_with_no_name(resolver):
    name = reverse_name("198.51.100.7", resolver)
    assert (name.ptr, name.ptr_status) == ("", PtrStatus.ERROR)
    assert "SERVFAIL" in name.reason


def test_timeout_is_error_never_a_made_up_name(silent_resolver):
    name = reverse_name("192.0.2.1", silent_resolver)
    assert (name.ptr, name.ptr_status) == ("", PtrStatus.ERROR)
    assert "timed out" in name.reason


@pytest.mark.django_db
def test_resolve_names_the_sources_seen_in_rollups(org, resolver):
    day = timezone.now().date() - dt.timedelta(days=1)
    make_report(
        organisation=org,
        policy_domain="example.com",
        day=day,
        records=[own("192.0.2.1", 5), own("192.0.2.3", 4), own("198.51.100.7", 3)],
    )
    assert sorted(sources_due(now=timezone.now())) == ["192.0.2.1", "192.0.2.3", "198.51.100.7"]
    counts = sources_resolve(resolver=resolver)
    assert counts == {"ok": 1, "none": 1, "error": 1}
    infos = {i.ip: i for i in SourceInfo.objects.all()}
    assert (infos["192.0.2.1"].ptr, infos["192.0.2.1"].ptr_status) == ("mail.example.test", "ok")
    assert (infos["192.0.2.3"].ptr, infos["192.0.2.3"].ptr_status) == ("", "none")
    assert (infos["198.51.100.7"].ptr, infos["198.51.100.7"].ptr_status) == ("", "error")
    assert all(i.resolved_at is not None for i in infos.values())
    # Cached: nothing is due again straight away.
    assert sources_due(now=timezone.now()) == []


@pytest.mark.django_db
def test_failed_lookups_are_retried_sooner_than_names_are_refreshed(resolver):
    now = timezone.now()
    make_source("192.0.2.1", "mail.example.test", ptr_status="ok", resolved_at=now)
    make_source("198.51.100.7", "", ptr_status="error", resolved_at=now)
    make_source("192.0.2.5", "", ptr_status="", resolved_at=None)
    assert sources_due(now=now) == ["192.0.2.5"]
    later = now + RETRY_ERROR_AFTER + dt.timedelta(minutes=1)
    assert sources_due(now=later) == ["192.0.2.5", "198.51.100.7"]
    much_later = now + REFRESH_AFTER + dt.timedelta(minutes=1)
    assert sources_due(now=much_later) == ["192.0.2.5", "192.0.2.1", "198.51.100.7"]
    counts = sources_resolve(resolver=resolver, now=lambda: much_later)
    assert counts == {"ok": 2, "error": 1}
    assert SourceInfo.objects.get(ip="192.0.2.5").ptr == "relay.example.test"


@pytest.mark.django_db
def test_batches_are_bounded(org, resolver):
    day = timezone.now().date()
    make_report(
        organisation=org,
        policy_domain="example.com",
        day=day,
        records=[own(f"192.0.2.{n}", 1) for n in range(10, 30)],
    )
    assert len(sources_due(now=timezone.now(), limit=5)) == 5
    assert sum(sources_resolve(resolver=resolver, limit=5).values()) == 5
    assert SourceInfo.objects.count() == 5


@pytest.mark.django_db
def test_the_beat_task_resolves_through_the_configured_servers(org, rdns_knot, settings):
    from reports.source_tasks import resolve_sources

    settings.MAILSEC_DNS_NAMESERVERS = [Nameserver(ADDRESS, rdns_knot.port)]
    make_report(
        organisation=org,
        policy_domain="example.com",
        day=timezone.now().date(),
        records=[own("192.0.2.1", 1)],
    )
    assert resolve_sources.name == "reports.tasks.resolve_sources"
    result = resolve_sources.apply(kwargs={"limit": 10}).get()
    assert result == {"ok": 1}
    assert SourceInfo.objects.get(ip="192.0.2.1").ptr == "mail.example.test"
