"""The report pages through Django's client: content, htmx fragments, scoping, raw downloads."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import json
import re

import pytest
from django.utils import timezone

from dns_records.models import CheckState, Domain
from mailsec.models import AuditLog, Role
from mailsec.services.members import membership_set
from reports.models import RawMessage, RawMessageState
from tests.reports.factories import (
    forwarded,
    make_raw_message,
    make_report,
    make_source,
    make_tls_report,
    own,
    spoof,
)

pytestmark = pytest.mark.django_db

TODAY = timezone.now().date()
D = "example.com"


def days_ago(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


@pytest.fixture
def domain(org):
    return Domain.objects.create(organisation=org, name=D)


@pytest.fixture
def report(org, domain):
    raw = make_raw_message(org, b"<html><script>alert(1)</script></html>", filename="../evil.html")
    make_report(organisation=org, policy_domain=D, day=days_ago(40), records=[own("192.0.2.1", 7)])
    return make_report(
        organisation=org,
        domain=domain,
        policy_domain=D,
        day=days_ago(1),
        raw_message=raw,
        report_id="<b>id</b>",
        records=[own("192.0.2.1", 900), spoof("203.0.113.9", 50), forwarded("198.51.100.7", 40)],
    )


@pytest.fixture
def client_of(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def test_reports_home_lists_domains_with_30_days_of_totals(client_of, owner, report):
    page = client_of(owner).get("/reports/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="/reports/domains/{report.domain.pk}/"' in html
    assert "990" in html
    assert 'aria-current="page">Reports' in html
    assert 'href="/reports/mailboxes/"' in html and 'href="/reports/quarantine/"' in html


def test_dashboard_shows_every_section(client_of, owner, report, org):
    make_source("192.0.2.1", "mail.example.com", asn=64500, as_org="Example Net", country="NL")
    make_tls_report(
        organisation=org, policy_domain=D, day=days_ago(2), failures=[("certificate-expired", 4)]
    )
    page = client_of(owner).get(f"/reports/domains/{report.domain.pk}/?days=7")
    assert page.status_code == 200
    html = page.content.decode()
    for needle in (
        'id="report-chart"',
        'id="top-sources"',
        "mail.example.com",
        "AS64500 Example Net",
        "Own / authorised",
        "Spoofing",
        "Forwarder",
        'id="reporters"',
        'id="dkim-selectors"',
        "s1._domainkey.example.com",
        'id="tls-failures"',
        "certificate-expired",
        'id="advisor"',
        'id="advisor-record"',
        "v=DMARC1; p=quarantine",
        'data-copy="#advisor-record"',
        "vendor/uplot/uPlot.iife.min.js",
        "js/report-charts.js",
        f'href="/reports/{report.pk}/"',
    ):
        assert needle in html, needle
    found = re.search(r'id="report-chart" data-chart="([^"]*)"', html)
    assert found is not None
    attribute = found.group(1)
    data = json.loads(htmllib.unescape(attribute))
    assert len(data["x"]) == 7
    assert data["series"][0]["values"][-1] == 940  # yesterday's passes
    assert data["series"][1]["values"][-1] == 50
    # No inline script or style: only external scripts with the page's nonce.
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag and "nonce=" in tag, tag
    assert "style=" not in html
    # The report id is escaped, never markup.
    assert "&lt;b&gt;id&lt;/b&gt;" in html


def test_range_switch_returns_the_fragment_for_htmx(client_of, owner, report):
    client = client_of(owner)
    fragment = client.get(
        f"/reports/domains/{report.domain.pk}/?days=90",
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="report-body",
    )
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="report-body" data-days="90">')
    assert "<html" not in html
    assert 'data-days="90" aria-current="true"' in html
    # 90 days include the report of 40 days ago.
    assert 'id="stat-messages">997<' in html
    week = client.get(f"/reports/domains/{report.domain.pk}/?days=7").content.decode()
    assert 'id="stat-messages">990<' in week
    odd = client.get(f"/reports/domains/{report.domain.pk}/?days=12345").content.decode()
    assert 'data-days="30" aria-current="true"' in odd


def test_pages_of_another_organisation_are_404(client_of, outsider, report):
    client = client_of(outsider)
    assert client.get(f"/reports/domains/{report.domain.pk}/").status_code == 404
    assert client.get(f"/reports/domains/{report.domain.pk}/card/").status_code == 404
    assert client.get(f"/reports/{report.pk}/").status_code == 404
    assert client.get(f"/raw-messages/{report.raw_message_id}/download/").status_code == 404
    assert D not in client.get("/reports/").content.decode()


def test_anonymous_is_sent_to_login(client, report):
    for url in ("/reports/", f"/reports/{report.pk}/", "/reports/quarantine/"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url


def test_report_detail_pages_its_records(client_of, viewer, org, domain):
    report = make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        records=[own(f"192.0.2.{n}", 200 - n) for n in range(1, 61)],
    )
    client = client_of(viewer)
    html = client.get(f"/reports/{report.pk}/").content.decode()
    assert "Page 1 of 2" in html and "60 records" in html
    assert "192.0.2.1<" in html and "192.0.2.51<" not in html
    fragment = client.get(
        f"/reports/{report.pk}/?page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="report-records"
    ).content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="report-records">')
    assert "192.0.2.51<" in fragment and "192.0.2.1<" not in fragment
    assert "not kept" in html  # no raw message


def test_raw_message_downloads_as_plain_text_attachment(client_of, viewer, report):
    response = client_of(viewer).get(f"/raw-messages/{report.raw_message_id}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="evil.html.txt"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response.content == b"<html><script>alert(1)</script></html>"


def test_domain_page_loads_the_30_day_card(client_of, owner, report):
    client = client_of(owner)
    page = client.get(f"/domains/{report.domain.pk}/").content.decode()
    assert f'hx-get="/reports/domains/{report.domain.pk}/card/"' in page
    card = client.get(f"/reports/domains/{report.domain.pk}/card/").content.decode()
    assert "DMARC reports (30 days)" in card
    assert "<strong>990</strong> messages" in card
    assert f'href="/reports/domains/{report.domain.pk}/"' in card


def test_advisor_keeps_the_checked_record_tags(client_of, owner, report, domain):
    now = timezone.now()
    CheckState.objects.create(
        domain=domain, name="dmarc", status="ok", summary="", checked_at=now, changed_at=now,
        details={"record": "v=DMARC1; p=none; rua=mailto:dmarc@example.com", "inherited_from": None},
    )  # fmt: skip
    html = client_of(owner).get(f"/reports/domains/{domain.pk}/").content.decode()
    assert (
        '<code id="advisor-record">v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com</code>'
        in html
    )


@pytest.fixture
def quarantined(org, other_org):
    mine = make_raw_message(
        org,
        b"not a report",
        state=RawMessageState.QUARANTINED,
        reason="not_a_report",
        detail="<i>no attachment</i>",
    )
    theirs = make_raw_message(other_org, b"x", state=RawMessageState.QUARANTINED, reason="empty")
    return mine, theirs


def test_quarantine_lists_reasons_and_offers_reprocess_to_admins(
    client_of, owner, viewer, quarantined
):
    mine, theirs = quarantined
    html = client_of(owner).get("/reports/quarantine/").content.decode()
    assert "No DMARC aggregate or TLS report was found in the message" in html
    assert "&lt;i&gt;no attachment&lt;/i&gt;" in html
    assert f'id="raw-message-{mine.pk}"' in html
    assert f'id="raw-message-{theirs.pk}"' not in html
    assert f'hx-post="/raw-messages/{mine.pk}/reprocess/"' in html
    viewer_html = client_of(viewer).get("/reports/quarantine/").content.decode()
    assert f'id="raw-message-{mine.pk}"' in viewer_html
    assert "Re-process" not in viewer_html


def test_reprocess_queues_the_message_again_and_is_audited(client_of, owner, quarantined):
    mine, _theirs = quarantined
    response = client_of(owner).post(f"/raw-messages/{mine.pk}/reprocess/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "queued to be parsed again" in response.content.decode()
    mine.refresh_from_db()
    assert mine.state == RawMessageState.PENDING
    assert AuditLog.objects.filter(action="report.raw_message.reprocess").count() == 1


def test_reprocess_is_refused_to_viewers_and_outsiders(
    client_of, viewer, outsider, quarantined, client
):
    mine, _theirs = quarantined
    assert client_of(viewer).post(f"/raw-messages/{mine.pk}/reprocess/").status_code == 403
    client.logout()
    assert client_of(outsider).post(f"/raw-messages/{mine.pk}/reprocess/").status_code == 404
    assert RawMessage.objects.get(pk=mine.pk).state == RawMessageState.QUARANTINED


def test_reprocess_needs_post_and_csrf(viewer, owner, quarantined):
    from django.test import Client

    mine, _ = quarantined
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.get(f"/raw-messages/{mine.pk}/reprocess/").status_code == 405
    assert strict.post(f"/raw-messages/{mine.pk}/reprocess/").status_code == 403
    assert RawMessage.objects.get(pk=mine.pk).state == RawMessageState.QUARANTINED


def test_a_second_reprocess_says_it_is_not_quarantined(client_of, owner, quarantined):
    mine, _ = quarantined
    client = client_of(owner)
    client.post(f"/raw-messages/{mine.pk}/reprocess/")
    again = client.post(f"/raw-messages/{mine.pk}/reprocess/").content.decode()
    assert "Only a quarantined message can be re-processed." in again


def test_admin_role_can_reprocess(client_of, org, quarantined, django_user_model):
    mine, _ = quarantined
    admin = django_user_model.objects.create_user("ada", password="x" * 20)
    membership_set(organisation=org, user=admin, role=Role.ADMIN, actor=None)
    assert client_of(admin).post(f"/raw-messages/{mine.pk}/reprocess/").status_code == 200


def test_attribution_is_shown_while_an_ip_database_is_installed(
    client_of, owner, report, tmp_path, settings
):
    from reports import geo
    from tests.reports.mmdb import write_mmdb

    settings.MAILSEC_IP_DATABASE_DIR = str(tmp_path / "ip")
    client = client_of(owner)
    url = f"/reports/domains/{report.domain.pk}/"
    assert "CC BY 4.0" not in client.get(url).content.decode()
    database = write_mmdb(
        tmp_path / "dbip-asn-lite-2026-01.mmdb",
        {"192.0.2.0/24": {"autonomous_system_number": 64500}},
        "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
    )
    geo.install(database, kind="asn")
    html = client.get(url).content.decode()
    assert "by DB-IP (https://db-ip.com), licensed under CC BY 4.0" in html
