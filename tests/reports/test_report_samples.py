"""Real sample reports through the storage pipeline, then read back by the selectors, API and pages.

Each sample is stored and parsed as an upload for one organisation (raw_message_store, then
raw_message_process, as the worker does). The read side must agree with what was stored: the
rollups' totals with the reports' totals, each source's messages with its records, the DKIM
selectors with the records' signatures, and the API and drill-down with the records.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from reports import selectors
from reports.models import IngestSource, RawMessageState, Record, Report
from reports.services import raw_message_process, raw_message_store

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "reports" / "samples"
ALL = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name != "SOURCES.md")
LONG_AGO = dt.date(1900, 1, 1)  # one sample's report is dated 1979


@pytest.fixture
def ingested(org):
    """Every sample, stored for `org`: {file name: (raw message, outcome)}."""
    assert ALL, f"no samples under {SAMPLES}"
    results = {}
    for path in ALL:
        message = raw_message_store(
            path.read_bytes(),
            source=IngestSource.UPLOAD,
            organisation_id=org.pk,
            filename=path.name,
            parse=False,
        )
        results[path.name] = (message, raw_message_process(raw_message_id=message.pk))
    return results


def test_rollups_agree_with_the_stored_reports_and_records(org, ingested):
    reports = Report.objects.filter(organisation=org)
    assert reports.count() >= 20
    for domain in sorted(set(reports.values_list("policy_domain", flat=True))):
        mine = reports.filter(policy_domain=domain)
        totals = selectors.report_totals(org, domain, start=LONG_AGO)
        assert totals.messages == sum(r.message_count for r in mine), domain
        assert totals.dmarc_pass == sum(r.dmarc_pass_count for r in mine), domain
        records = Record.objects.filter(report__in=mine)
        by_ip: Counter[str] = Counter()
        for record in records:
            by_ip[record.source_ip] += record.count
        sources = selectors.all_sources(org, domain, start=LONG_AGO)
        assert {s.ip: s.messages for s in sources} == dict(by_ip), domain
        assert sum(s.counts.dmarc_pass for s in sources) == totals.dmarc_pass
        assert sum(totals.dispositions.values()) == totals.messages
        # Every DKIM result of every record shows among the selectors seen.
        signed: Counter[tuple[str, str, str]] = Counter()
        for record in records:
            for auth in record.dkim_results:
                signed[(auth["domain"], auth["selector"], auth["result"])] += record.count
        seen = {
            (row.dkim_domain, row.selector, result): n
            for row in selectors.dkim_selectors_seen(org, domain, start=LONG_AGO)
            for result, n in row.results.items()
        }
        assert sum(seen.values()) == sum(signed.values()), domain
        assert set(seen) == set(signed), domain


def test_the_api_lists_each_stored_report_with_its_records(owner_api, org, ingested):
    stored = Report.objects.filter(organisation=org)
    listing = owner_api.get("/api/v1/reports/?limit=500").json()
    assert listing["count"] == stored.count()
    by_id = {item["id"]: item for item in listing["results"]}
    for report in stored:
        item = by_id[report.pk]
        assert (item["org_name"], item["report_id"], item["domain"]) == (
            report.org_name,
            report.report_id,
            report.policy_domain,
        )
        assert item["message_count"] == report.message_count
        records = []
        url: str | None = f"/api/v1/reports/{report.pk}/?records_limit=1000"
        while url:
            detail = owner_api.get(url).json()
            assert detail["records_count"] == report.record_count
            records += detail["records"]
            url = detail["records_next"]
        assert len(records) == report.record_count
        assert sum(r["count"] for r in records) == report.message_count
        assert {r["source_class"] for r in records} <= {
            "own",
            "forwarder",
            "unauthorised",
            "spoofing",
        }


def test_the_summary_of_a_sampled_domain_reads_its_rollups(owner_api, org, ingested):
    from dns_records.models import Domain

    report = Report.objects.filter(organisation=org).order_by("-date_begin").first()
    assert report is not None
    Domain.objects.get_or_create(organisation=org, name=report.policy_domain)
    days = min((dt.date.today() - report.date_begin.date()).days + 1, selectors.MAX_RANGE_DAYS)
    body = owner_api.get(
        f"/api/v1/reports/summary/?domain={report.policy_domain}&days={days}"
    ).json()
    start = selectors.range_start(days)
    expected = selectors.report_totals(org, report.policy_domain, start=start)
    assert body["totals"]["messages"] == expected.messages
    assert body["start"] == start.isoformat()


def test_drill_down_pages_render_every_sample_report(client, owner, org, ingested):
    client.force_login(owner)
    for report in Report.objects.filter(organisation=org):
        page = client.get(f"/reports/{report.pk}/")
        assert page.status_code == 200, report
        html = page.content.decode()
        assert f"{report.record_count} record" in html
        if report.raw_message_id:
            raw = client.get(f"/raw-messages/{report.raw_message_id}/download/")
            assert raw["Content-Disposition"].startswith("attachment;")
            assert report.raw_message is not None
            assert raw.content == bytes(report.raw_message.content)


def test_rejected_samples_are_in_the_quarantine_with_their_reason(client, owner, ingested):
    client.force_login(owner)
    html = client.get("/reports/quarantine/?page=1").content.decode()
    quarantined = [
        (message, outcome)
        for message, outcome in ingested.values()
        if outcome is not None and outcome.status == "rejected"
    ]
    assert quarantined, "the samples include a failure report and an empty file"
    for message, _outcome in quarantined:
        message.refresh_from_db()
        assert message.state == RawMessageState.QUARANTINED
        assert f'id="raw-message-{message.pk}"' in html
        assert f'<code class="muted">{message.reason}</code>' in html
