"""Read queries for the report dashboards and API, over rollups built by the test factory."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from dns_records.models import CheckState, Domain
from reports import selectors
from reports.advisor import Step
from reports.classify import SourceClass
from reports.models import RawMessageState
from tests.reports.factories import (
    Rec,
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
def data(org, other_org):
    make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        records=[own("192.0.2.1", 900), spoof("203.0.113.9", 50), forwarded("198.51.100.7", 40)],
    )
    make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        org_name="yahoo.com",
        records=[
            own("192.0.2.1", 100, selector="s2"),
            Rec(
                "192.0.2.2",
                10,
                disposition="quarantine",
                dkim_aligned="fail",
                spf_aligned="pass",
                spf=[(D, "mfrom", "pass")],
            ),
        ],
    )
    make_report(
        organisation=org, policy_domain=D, day=days_ago(20), records=[own("192.0.2.1", 500)]
    )
    # Outside a 7-day range, inside 30 days; another domain; another organisation.
    make_report(
        organisation=org,
        policy_domain="other.example",
        day=days_ago(1),
        records=[own("192.0.2.1", 7)],
    )
    make_report(
        organisation=other_org,
        policy_domain=D,
        day=days_ago(1),
        records=[spoof("203.0.113.1", 999)],
    )


def test_totals_count_messages_by_result_in_the_range(org, data):
    totals = selectors.report_totals(org, D, start=selectors.range_start(7))
    assert totals.messages == 1100
    assert totals.dmarc_pass == 1050  # 900 + 40 forwarded (DKIM aligned) + 100 + 10 (SPF aligned)
    assert totals.dmarc_fail == 50
    assert totals.spf_aligned_pass == 1010
    assert totals.dkim_aligned_pass == 1040
    assert totals.dispositions == {"none": 1090, "quarantine": 10}
    assert totals.dmarc_pass_share == pytest.approx(1050 / 1100)
    wide = selectors.report_totals(org, D, start=selectors.range_start(30))
    assert wide.messages == 1600


def test_a_range_is_whole_days_before_today_and_today_once_reported(org):
    assert selectors.range_start(7) == days_ago(7)
    assert selectors.range_start(0) == days_ago(1)
    assert selectors.range_start(10_000) == days_ago(selectors.MAX_RANGE_DAYS)
    make_report(organisation=org, policy_domain=D, day=TODAY, records=[own("192.0.2.1", 3)])
    points = selectors.messages_by_day(org, D, start=selectors.range_start(7))
    assert len(points) == 8 and points[-1].day == TODAY and points[-1].messages == 3


def test_totals_of_nothing_are_zero(org):
    totals = selectors.report_totals(org, D, start=selectors.range_start(7))
    assert totals.messages == 0 and totals.dispositions == {} and totals.dmarc_pass_share == 0


def test_messages_by_day_has_every_day_of_the_range(org, data):
    points = selectors.messages_by_day(org, D, start=selectors.range_start(7))
    assert [p.day for p in points] == [days_ago(n) for n in range(7, 0, -1)]
    by_day = {p.day: p for p in points}
    assert by_day[days_ago(1)].dmarc_pass == 1050
    assert by_day[days_ago(1)].dmarc_fail == 50
    assert by_day[days_ago(2)].messages == 0


def test_top_sources_are_ordered_with_names_and_classes(org, data):
    make_source("192.0.2.1", "mail.example.com", asn=64500, as_org="Example Net", country="NL")
    rows = selectors.top_sources(org, D, start=selectors.range_start(7))
    assert [r.ip for r in rows] == ["192.0.2.1", "203.0.113.9", "198.51.100.7", "192.0.2.2"]
    first = rows[0]
    assert first.messages == 1000 and first.pass_share == 1.0
    assert (first.ptr, first.asn, first.as_org, first.country) == (
        "mail.example.com",
        64500,
        "Example Net",
        "NL",
    )
    assert first.classification.kind is SourceClass.OWN
    assert rows[1].classification.kind is SourceClass.SPOOFING
    assert rows[1].ptr == "" and rows[1].pass_share == 0
    assert rows[2].classification.kind is SourceClass.FORWARDER
    assert selectors.top_sources(org, D, start=selectors.range_start(7), limit=1)[0].ip == (
        "192.0.2.1"
    )
    assert selectors.top_sources_counted(org, D, start=selectors.range_start(7), limit=2)[1] == 4


def test_other_organisations_rollups_never_count(org, other_org, data):
    rows = selectors.top_sources(org, D, start=selectors.range_start(7))
    assert "203.0.113.1" not in {r.ip for r in rows}
    theirs = selectors.report_totals(other_org, D, start=selectors.range_start(7))
    assert theirs.messages == 999


def test_reporters_with_reports_and_messages(org, data):
    rows = selectors.reporters(org, D, start=selectors.range_start(7))
    assert [(r.org_name, r.reports, r.messages) for r in rows] == [
        ("google.com", 1, 990),
        ("yahoo.com", 1, 110),
    ]


def test_dkim_selectors_seen_with_results(org, data):
    make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(2),
        records=[Rec("192.0.2.9", 5, dkim_aligned="fail", dkim=[(D, "s1", "fail")])],
    )
    rows = selectors.dkim_selectors_seen(org, D, start=selectors.range_start(7))
    assert [(r.dkim_domain, r.selector, r.results) for r in rows] == [
        (D, "s1", {"pass": 940, "fail": 5}),
        (D, "s2", {"pass": 100}),
    ]
    assert rows[0].passed == 940 and rows[0].messages == 945


def test_tls_summary_by_policy_and_mx(org, other_org):
    make_tls_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        successful=100,
        failures=[("certificate-expired", 3), ("starttls-not-supported", 2)],
    )
    make_tls_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(2),
        mx="mx2.example.com",
        successful=50,
        failures=[("certificate-expired", 1)],
    )
    make_tls_report(organisation=other_org, policy_domain=D, day=days_ago(1), successful=7)
    tls = selectors.tls_summary(org, D, start=selectors.range_start(7))
    assert (tls.reports, tls.successful_sessions, tls.failed_sessions) == (2, 150, 6)
    assert tls.sessions == 156
    assert [(f.mx, f.result_type, f.failed_sessions) for f in tls.failures] == [
        ("mx1.example.com", "certificate-expired", 3),
        ("mx1.example.com", "starttls-not-supported", 2),
        ("mx2.example.com", "certificate-expired", 1),
    ]
    assert [(p.mx_hosts, p.successful_sessions, p.failed_sessions) for p in tls.policies] == [
        (("mx1.example.com",), 100, 5),
        (("mx2.example.com",), 50, 1),
    ]


def test_reports_visible_are_scoped_and_filtered(owner, outsider, org, data):
    mine = selectors.reports_visible(owner)
    assert mine.count() == 4
    assert {r.organisation_id for r in mine} == {org.pk}
    assert selectors.reports_visible(owner, domain="EXAMPLE.com.").count() == 3
    assert selectors.reports_visible(owner, since=days_ago(5)).count() == 3
    assert selectors.reports_visible(owner, until=days_ago(5)).count() == 1
    assert selectors.reports_visible(outsider, domain=D).count() == 1
    report = mine.first()
    assert report is not None
    assert selectors.report_visible(outsider, report.pk) is None
    assert selectors.report_visible(owner, report.pk) == report


def test_report_records_most_messages_first(owner, org, data):
    report = selectors.reports_visible(owner, domain=D).filter(org_name="google.com").first()
    assert report is not None
    counts = [r.count for r in selectors.report_records(report)]
    assert counts == [900, 50, 40]


def test_quarantine_is_scoped_to_the_organisation(
    owner, outsider, org, other_org, django_user_model
):
    mine = make_raw_message(org, state=RawMessageState.QUARANTINED, reason="empty")
    make_raw_message(other_org, state=RawMessageState.QUARANTINED, reason="empty")
    orphan = make_raw_message(None, state=RawMessageState.QUARANTINED, reason="not_a_report")
    make_raw_message(org, state=RawMessageState.STORED)
    assert list(selectors.quarantine_visible(owner)) == [mine]
    admin = django_user_model.objects.create_superuser("root", password="x" * 20)
    assert orphan in list(selectors.quarantine_visible(admin))
    assert selectors.raw_message_visible(owner, orphan.pk) is None
    assert selectors.raw_message_visible(admin, orphan.pk) == orphan
    assert selectors.raw_message_visible(outsider, mine.pk) is None


def test_raw_message_of_a_report_is_visible_through_the_report(owner, outsider, org):
    raw = make_raw_message(None, b"<feedback/>")
    make_report(organisation=org, policy_domain=D, day=days_ago(1), records=[], raw_message=raw)
    assert selectors.raw_message_visible(owner, raw.pk) == raw
    assert selectors.raw_message_visible(outsider, raw.pk) is None


def test_advice_uses_the_checked_record_and_30_days(org, data):
    domain = Domain.objects.create(organisation=org, name=D)
    now = timezone.now()
    CheckState.objects.create(
        domain=domain,
        name="dmarc",
        status="ok",
        summary="",
        checked_at=now,
        changed_at=now,
        details={"record": "v=DMARC1; p=none; rua=mailto:d@example.com", "inherited_from": None},
    )
    advice = selectors.policy_advice(org, D)
    assert advice.messages == 1600
    assert advice.current_policy == "none"
    assert advice.step is Step.QUARANTINE
    assert advice.next_record == "v=DMARC1; p=quarantine; rua=mailto:d@example.com"


def test_advice_falls_back_to_the_reported_policy(org):
    make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        records=[own("192.0.2.1", 500)],
        policy={"p": "quarantine", "pct": 50},
    )
    advice = selectors.policy_advice(org, D)
    assert advice.current_policy == "quarantine" and advice.current_pct == 50
    assert advice.step is Step.RAMP
    assert advice.next_record == "v=DMARC1; p=quarantine; pct=100; adkim=r; aspf=r"


def test_domain_summary_puts_it_together(org, data):
    summary = selectors.domain_summary(org, D, days=7)
    assert summary.totals.messages == 1100
    assert len(summary.by_day) == 7
    assert summary.top_sources[0].ip == "192.0.2.1"
    assert summary.source_count == 4
    assert summary.reporters[0].org_name == "google.com"
    assert summary.advice.domain == D


def test_cached_rollup_answers_follow_stored_and_deleted_reports(org):
    start = selectors.range_start(7)
    first = make_report(
        organisation=org, policy_domain=D, day=days_ago(1), records=[own("192.0.2.1", 10)]
    )
    assert selectors.report_totals(org, D, start=start).messages == 10
    assert selectors.top_sources(org, D, start=start)[0].messages == 10
    make_report(organisation=org, policy_domain=D, day=days_ago(2), records=[own("192.0.2.1", 5)])
    assert selectors.report_totals(org, D, start=start).messages == 15
    assert selectors.top_sources(org, D, start=start)[0].messages == 15
    # Retention deletes a report and its rollups: the next answer is read again.
    from reports.models import DailyRollup

    DailyRollup.objects.filter(organisation=org, day=days_ago(1)).delete()
    first.delete()
    assert selectors.report_totals(org, D, start=start).messages == 5
    assert [s.messages for s in selectors.all_sources(org, D, start=start)] == [5]


def test_names_are_read_fresh_while_counts_are_cached(org):
    start = selectors.range_start(7)
    make_report(organisation=org, policy_domain=D, day=days_ago(1), records=[own("192.0.2.1", 3)])
    assert selectors.top_sources(org, D, start=start)[0].ptr == ""
    make_source("192.0.2.1", "mail.example.com")
    assert selectors.top_sources(org, D, start=start)[0].ptr == "mail.example.com"


def test_cached_advice_follows_a_new_dmarc_check_result(org):
    domain = Domain.objects.create(organisation=org, name=D)
    make_report(organisation=org, policy_domain=D, day=days_ago(1), records=[own("192.0.2.1", 500)])
    now = timezone.now()
    state = CheckState.objects.create(
        domain=domain, name="dmarc", status="ok", summary="", checked_at=now, changed_at=now,
        details={"record": "v=DMARC1; p=none", "inherited_from": None},
    )  # fmt: skip
    assert selectors.policy_advice(org, D).next_record == "v=DMARC1; p=quarantine"
    state.details = {"record": "v=DMARC1; p=quarantine", "inherited_from": None}
    state.save()
    assert selectors.policy_advice(org, D).next_record == "v=DMARC1; p=reject"
