"""The blocklist page and its panels: the matrix, history, blacklist, zones and DQS key, per
organisation and role; a domain's own listings; the domain list's worst status."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from blocklists import services
from blocklists.models import BlacklistEntry, BlocklistSettings, BlocklistZone
from mailsec.models import AuditLog
from tests.blocklists.conftest import DQS_KEY

pytestmark = [pytest.mark.knot, pytest.mark.django_db]

HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def polled(bl_dns, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    return org


def cell(page: str, target: str, zone: str) -> str:
    row = re.search(
        rf"<tr>\s*<th scope=\"row\"><code>{re.escape(target)}</code>.*?</tr>", page, re.S
    )
    assert row, target
    found = re.search(
        rf'<td class="bl-cell[^"]*" data-zone="{re.escape(zone)}"[^>]*>', row.group(0)
    )
    assert found, (target, zone)
    return found.group(0)


def test_anonymous_users_are_sent_to_login():
    response = Client().get("/blocklists/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_matrix_shows_listed_clean_and_error(owner, polled):
    page = login(owner).get("/blocklists/").content.decode()
    assert 'data-status="listed"' in cell(page, "192.0.2.25", "zen.spamhaus.org")
    assert 'data-status="clean"' in cell(page, "192.0.2.10", "zen.spamhaus.org")
    assert 'data-status="error"' in cell(page, "192.0.2.66", "zen.spamhaus.org")
    assert 'data-status="listed"' in cell(page, "listed.test", "dbl.spamhaus.org")
    assert "https://check.spamhaus.org/results/?query=192.0.2.25" in page
    assert "XBL: exploited or infected host" in page
    assert "MAILSEC_DNS_NAMESERVERS" in page and "public resolvers" in page
    assert 'id="blocklist-history"' in page


def test_stale_states_are_marked(owner, polled, bl_dns, settings):
    bl_dns.silent = "spamhaus.org"
    services.organisation_poll(organisation_id=polled.pk)
    page = login(owner).get("/blocklists/").content.decode()
    listed = cell(page, "192.0.2.25", "zen.spamhaus.org")
    assert 'data-status="listed"' in listed and 'data-stale="true"' in listed
    assert "stale since" in page


def test_another_organisations_page_is_a_404(outsider, polled):
    client = login(outsider)
    assert client.get(f"/blocklists/?org={polled.slug}").status_code == 404
    assert client.get(f"/blocklists/{polled.slug}/matrix/").status_code == 404
    assert client.post(f"/blocklists/{polled.slug}/poll/").status_code == 404
    assert (
        client.post(f"/blocklists/{polled.slug}/entries/", {"network": "192.0.2.1"}).status_code
        == 404
    )
    own = client.get("/blocklists/").content.decode()
    assert "192.0.2.25" not in own


def test_viewer_sees_no_forms_and_cannot_change(viewer, polled):
    client = login(viewer)
    page = client.get("/blocklists/").content.decode()
    assert "Poll now" not in page and 'name="network"' not in page and "Pause" not in page
    response = client.post(
        f"/blocklists/{polled.slug}/entries/", {"network": "192.0.2.1", "expires": "never"}, **HTMX
    )
    assert "cannot change" in response.content.decode()
    assert not BlacklistEntry.objects.exists()


def test_poll_now_queues_a_poll_and_the_matrix_polls_until_done(owner, org, acme):
    response = login(owner).post(f"/blocklists/{org.slug}/poll/", **HTMX)
    body = response.content.decode()
    assert "polling…" in body and 'hx-trigger="every 3s"' in body


def test_add_and_remove_a_blacklist_entry(owner, org):
    client = login(owner)
    response = client.post(
        f"/blocklists/{org.slug}/entries/",
        {"network": "2001:db8::/48", "reason": "abuse", "expires": "7"},
        **HTMX,
    )
    body = response.content.decode()
    assert "<code>2001:db8::/48</code>" in body and "[2001:db8::]/48\tREJECT abuse" in body
    entry = BlacklistEntry.objects.get()
    assert entry.expires_at is not None and entry.created_by == owner
    bad = client.post(
        f"/blocklists/{org.slug}/entries/", {"network": "192.0.2.7/24", "expires": "never"}, **HTMX
    )
    assert "not an IP address or network" in bad.content.decode()
    removed = client.post(f"/blacklist-entries/{entry.pk}/remove/", **HTMX)
    assert "No entry." in removed.content.decode()
    assert AuditLog.objects.filter(action="blacklist_entry.delete").exists()


def test_outsider_cannot_remove_an_entry(owner, outsider, org):
    entry = services.blacklist_entry_add(
        organisation=org, network="192.0.2.7", reason="", expires_at=None, actor=owner
    )
    assert login(outsider).post(f"/blacklist-entries/{entry.pk}/remove/").status_code == 404
    assert BlacklistEntry.objects.filter(pk=entry.pk).exists()


def test_zones_pause_add_and_remove(owner, org, bl_dns):
    client = login(owner)
    client.get("/blocklists/")
    zen = BlocklistZone.objects.get(organisation=org, name="zen.spamhaus.org")
    body = client.post(f"/blocklist-zones/{zen.pk}/toggle/", **HTMX).content.decode()
    assert "paused" in body
    zen.refresh_from_db()
    assert not zen.enabled
    body = client.post(
        f"/blocklists/{org.slug}/zones/", {"name": "bl.example.net", "kind": "ip"}, **HTMX
    ).content.decode()
    assert "<code>bl.example.net</code>" in body
    body = client.post(
        f"/blocklists/{org.slug}/zones/", {"name": "no spaces", "kind": "ip"}, **HTMX
    ).content.decode()
    assert "not a blocklist zone name" in body
    added = BlocklistZone.objects.get(name="bl.example.net")
    client.post(f"/blocklist-zones/{added.pk}/remove/", **HTMX)
    assert not BlocklistZone.objects.filter(pk=added.pk).exists()


def test_dqs_key_is_write_only(owner, org):
    client = login(owner)
    body = client.post(
        f"/blocklists/{org.slug}/dqs-key/", {"key": DQS_KEY}, **HTMX
    ).content.decode()
    assert "key set" in body and DQS_KEY not in body
    assert DQS_KEY not in client.get("/blocklists/").content.decode()
    assert BlocklistSettings.objects.get(organisation=org).dqs_key.startswith("v1:")
    bad = client.post(f"/blocklists/{org.slug}/dqs-key/", {"key": "no"}, **HTMX).content.decode()
    assert "8 to 64 letters and digits" in bad
    body = client.post(f"/blocklists/{org.slug}/dqs-key/", {"remove": "1"}, **HTMX).content.decode()
    assert "no key" in body


def test_domain_page_shows_its_own_listings(owner, polled, acme):
    client = login(owner)
    assert (
        f'hx-get="/domains/{acme.pk}/blocklists/"'
        in client.get(f"/domains/{acme.pk}/").content.decode()
    )
    section = client.get(f"/domains/{acme.pk}/blocklists/").content.decode()
    assert "192.0.2.25" in section and "::ffff:7f00:2" in section
    assert "listed.test" not in section  # another domain's listing


def test_domain_listings_of_another_organisation_are_a_404(outsider, polled, acme):
    assert login(outsider).get(f"/domains/{acme.pk}/blocklists/").status_code == 404


def test_domain_list_shows_a_listed_domain_as_fail(owner, polled, acme):
    from dns_records.models import Domain

    Domain.objects.filter(pk=acme.pk).update(worst_status="warning")
    page = login(owner).get("/domains/").content.decode()
    found = re.search(rf'<tr id="domain-{acme.pk}".*?</tr>', page, re.S)
    assert found is not None
    row = found.group(0)
    assert 'data-status="fail"' in row
    assert "blocklists" in row and "is listed on" in row
    single = login(owner).get(f"/domains/{acme.pk}/row/").content.decode()
    assert 'data-status="fail"' in single


def test_domain_list_filter_and_counts_count_a_listing_as_fail(owner, polled, acme):
    from dns_records.models import Domain

    Domain.objects.filter(pk=acme.pk).update(worst_status="warning")
    Domain.objects.filter(name="listed.test").update(worst_status="ok")
    Domain.objects.create(organisation=polled, name="quiet.test", worst_status="warning")
    client = login(owner)
    failing = client.get("/domains/?status=fail").content.decode()
    assert "acme.test" in failing and "listed.test" in failing and "quiet.test" not in failing
    warning = client.get("/domains/?status=warning").content.decode()
    table = warning[warning.index('id="domain-table"') :]
    assert "quiet.test" in table and "acme.test" not in table
    counts = re.search(r'<nav id="status-counts".*?</nav>', failing, re.S)
    assert counts is not None
    assert re.search(r"fail</span> 2<", counts.group(0))
    assert re.search(r"warning</span> 1<", counts.group(0))
    assert "ok</span>" not in counts.group(0)
