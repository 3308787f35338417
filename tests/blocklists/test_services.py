"""Polls against the fixture Knot: targets from DNS, three states, errors that never flip a
known state, events on listed <-> clean, the DQS key."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from blocklists import services
from blocklists.models import BlocklistSettings, BlocklistTarget, Listing, ListingEvent
from dns_records.models import Domain
from mailsec.env import parse_nameserver
from mailsec.models import AuditLog
from tests.blocklists.conftest import DQS_KEY, FIXTURES, KNOT_ADDRESS, zone_names
from tests.servers import KnotServer

pytestmark = [pytest.mark.knot, pytest.mark.django_db]


def state(org, target, zone):
    return Listing.objects.get(target__organisation=org, target__value=target, zone=zone)


def test_targets_are_the_domains_and_every_mx_address(bl_dns, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    targets = {
        (t.kind, t.value): t.sources for t in BlocklistTarget.objects.filter(organisation=org)
    }
    assert targets == {
        ("domain", "acme.test"): ["domain acme.test"],
        ("domain", "listed.test"): ["domain listed.test"],
        ("ip", "192.0.2.25"): ["MX mx1.acme.test of acme.test"],
        ("ip", "::ffff:7f00:2"): ["MX mx1.acme.test of acme.test"],
        ("ip", "192.0.2.10"): ["MX mx2.acme.test of acme.test"],
        ("ip", "2001:db8::25"): ["MX mx2.acme.test of acme.test"],
        ("ip", "127.0.0.2"): ["MX mx.listed.test of listed.test"],
        ("ip", "192.0.2.66"): ["MX mx.listed.test of listed.test"],
    }
    mx1 = BlocklistTarget.objects.get(organisation=org, value="192.0.2.25")
    assert list(mx1.domains.all()) == [acme]


def test_zones_are_seeded_from_the_settings(bl_dns, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    assert zone_names(org) == {
        ("zen.spamhaus.org", "ip"), ("bl.test", "ip"), ("refusing.test", "ip"),
        ("outside.test", "ip"), ("everything.test", "ip"),
        ("dbl.spamhaus.org", "domain"), ("multi.uribl.com", "domain"),
    }  # fmt: skip


def test_listed_clean_and_error_are_three_states(bl_dns, org, acme):
    results = services.organisation_poll(organisation_id=org.pk)
    assert len(results) == 6 * 5 + 2 * 2
    # RFC 5782 test points, IPv4 and IPv6 (::FFFF:7F00:2, by nibble).
    assert state(org, "127.0.0.2", "zen.spamhaus.org").status == "listed"
    v6 = state(org, "::ffff:7f00:2", "zen.spamhaus.org")
    assert (v6.status, v6.code) == ("listed", "127.0.0.2")
    xbl = state(org, "192.0.2.25", "zen.spamhaus.org")
    assert (xbl.status, xbl.code) == ("listed", "127.0.0.4")
    assert "XBL" in xbl.meaning
    assert xbl.reason == "https://www.spamhaus.org/query/ip/192.0.2.25"
    assert state(org, "192.0.2.10", "zen.spamhaus.org").status == "clean"
    unknown_v6 = state(org, "2001:db8::25", "bl.test")
    assert (unknown_v6.status, unknown_v6.reason) == ("listed", "listed: IPv6 spam source")
    # The domain lists: a listed domain, and URIBL refusing the query.
    dbl = state(org, "listed.test", "dbl.spamhaus.org")
    assert (dbl.status, dbl.meaning) == ("listed", "spam domain")
    assert state(org, "acme.test", "dbl.spamhaus.org").status == "clean"
    refused = state(org, "acme.test", "multi.uribl.com")
    assert refused.status == "error" and "refused" in refused.error
    assert state(org, "listed.test", "multi.uribl.com").meaning == "black, grey"


def test_list_error_answers_are_errors_never_listed(bl_dns, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    public = state(org, "192.0.2.66", "zen.spamhaus.org")
    assert (public.status, public.code) == ("error", "127.255.255.254")
    assert "public" in public.error
    for target in ("127.0.0.2", "192.0.2.25", "2001:db8::25"):
        assert state(org, target, "refusing.test").status == "error"
        outside = state(org, target, "outside.test")
        assert outside.status == "error" and "outside 127.0.0.0/8" in outside.error
        everything = state(org, target, "everything.test")
        assert everything.status == "error" and "negative test point" in everything.error


def test_a_silent_list_keeps_the_known_state_marked_stale(bl_dns, org, acme, settings):
    settings.MAILSEC_DNSBL_IP_ZONES = ["flaky.test"]
    services.organisation_poll(organisation_id=org.pk)
    assert state(org, "192.0.2.25", "flaky.test").status == "listed"
    assert state(org, "192.0.2.10", "flaky.test").status == "clean"
    events_before = ListingEvent.objects.count()

    bl_dns.silent = "flaky.test"
    results = services.organisation_poll(organisation_id=org.pk)
    assert {r.verdict.status for r in results if r.zone.name == "flaky.test"} == {"error"}
    listed = state(org, "192.0.2.25", "flaky.test")
    clean = state(org, "192.0.2.10", "flaky.test")
    assert (listed.status, listed.stale) == ("listed", True)
    assert (clean.status, clean.stale) == ("clean", True)
    assert "timed out" in listed.error
    assert ListingEvent.objects.count() == events_before

    bl_dns.silent = "nothing-is-silenced.invalid"
    services.organisation_poll(organisation_id=org.pk)
    listed.refresh_from_db()
    assert (listed.status, listed.stale, listed.error) == ("listed", False, "")
    assert ListingEvent.objects.count() == events_before


def test_a_first_error_is_an_error_state_not_clean(bl_dns, org, acme, settings):
    settings.MAILSEC_DNSBL_IP_ZONES = ["flaky.test"]
    bl_dns.silent = "flaky.test"
    services.organisation_poll(organisation_id=org.pk)
    row = state(org, "192.0.2.10", "flaky.test")
    assert (row.status, row.stale) == ("error", False)


@pytest.fixture
def own_knot(tmp_path, settings):
    """A Knot of this test's own (zones it may edit), on the blocklist tests' address."""
    source = tmp_path / "zones-source"
    shutil.copytree(FIXTURES, source)
    server = KnotServer(tmp_path / "knot", address=KNOT_ADDRESS, source=source)
    server.start()
    settings.MAILSEC_DNS_NAMESERVERS = [parse_nameserver(server.nameserver)]
    settings.MAILSEC_DNS_TIMEOUT = 1.0
    settings.MAILSEC_DNSBL_IP_ZONES = ["flaky.test"]
    settings.MAILSEC_DNSBL_DOMAIN_ZONES = ["dbl.spamhaus.org"]
    try:
        yield server
    finally:
        server.stop()


def _edit_zone(server: KnotServer, zone: str, change) -> None:
    path = Path(server.directory) / "zones" / f"{zone}.zone"
    text = change(path.read_text())
    text = re.sub(r"2026120301", "2026120302", text)
    path.write_text(text)
    server.reload()


def test_listed_to_clean_and_back_are_events(own_knot, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    first = list(ListingEvent.objects.filter(target__value="192.0.2.25"))
    assert [(e.previous_status, e.status) for e in first] == [("", "listed")]

    _edit_zone(own_knot, "flaky.test", lambda t: t.replace("25.2.0.192 A 127.0.0.2\n", ""))
    services.organisation_poll(organisation_id=org.pk)
    row = state(org, "192.0.2.25", "flaky.test")
    assert row.status == "clean"
    latest = ListingEvent.objects.filter(target__value="192.0.2.25").first()
    assert latest is not None
    assert (latest.previous_status, latest.status, latest.zone) == ("listed", "clean", "flaky.test")
    # clean -> clean, and a clean address becoming known, are no events.
    assert not ListingEvent.objects.filter(target__value="192.0.2.10").exists()


def test_a_dqs_key_sends_the_questions_to_the_dqs_zones(bl_dns, org, acme, owner):
    services.dqs_key_set(organisation=org, key=DQS_KEY.upper(), actor=owner)
    row = BlocklistSettings.objects.get(organisation=org)
    assert row.dqs_key.startswith("v1:") and DQS_KEY not in row.dqs_key
    assert services.dqs_key_of(org) == DQS_KEY
    services.organisation_poll(organisation_id=org.pk)
    # Through DQS the public-resolver refusal is gone: 192.0.2.66 is answered (CSS).
    public = state(org, "192.0.2.66", "zen.spamhaus.org")
    assert (public.status, public.code) == ("listed", "127.0.0.3")
    assert state(org, "listed.test", "dbl.spamhaus.org").status == "listed"
    assert state(org, "192.0.2.10", "zen.spamhaus.org").status == "clean"
    audit = AuditLog.objects.get(action="blocklist_settings.dqs_key")
    assert DQS_KEY not in str(audit.after) and audit.after == {"dqs_key": "set"}


def test_a_domain_gone_retires_its_targets(bl_dns, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    Domain.objects.filter(name="listed.test").delete()
    services.organisation_poll(organisation_id=org.pk)
    assert not BlocklistTarget.objects.get(value="127.0.0.2").active
    assert BlocklistTarget.objects.get(value="192.0.2.25").active


def test_failed_mx_lookups_retire_nothing(bl_dns, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    bl_dns.silent = "acme.test"
    services.organisation_poll(organisation_id=org.pk)
    assert BlocklistTarget.objects.get(value="192.0.2.25").active


def test_due_organisations_are_claimed_once(bl_dns, org, acme, other_org):
    from django.utils import timezone

    now = timezone.now()
    assert services.polls_claim_due(now=now) == [org.pk]  # other_org has no domains
    assert services.polls_claim_due(now=now) == []


def test_managed_hosts_addresses_are_targets(bl_dns, org, acme):
    from hosts.models import Host

    by_ip = Host.objects.create(organisation=org, name="mail.acme.test", address="192.0.2.66")
    by_ip.domains.add(acme)
    Host.objects.create(organisation=org, name="relay.acme.test", address="mx2.acme.test")
    Host.objects.create(
        organisation=org, name="reported.acme.test", address="ssh.example",
        facts={"addresses": ["2001:DB8::25", "not an address"]},
    )  # fmt: skip
    services.organisation_poll(organisation_id=org.pk)
    sources = {t.value: t.sources for t in BlocklistTarget.objects.filter(organisation=org)}
    assert "host mail.acme.test" in sources["192.0.2.66"]
    assert sources["192.0.2.10"] == ["MX mx2.acme.test of acme.test", "host relay.acme.test"]
    assert "host reported.acme.test" in sources["2001:db8::25"]
    assert state(org, "192.0.2.66", "zen.spamhaus.org").status == "error"  # public-resolver code
    assert acme in BlocklistTarget.objects.get(value="192.0.2.66").domains.all()
