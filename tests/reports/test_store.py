"""Storing parsed reports: once per organisation, with their records, totals and rollups."""

from __future__ import annotations

import collections

import pytest
from django.db import DatabaseError
from django.db.models import Sum

from dns_records.models import Domain
from mailsec.services.members import organisation_create
from reports.models import (
    DailyRollup,
    DailySelector,
    RawMessage,
    RawMessageState,
    Record,
    Report,
    TlsFailure,
    TlsPolicy,
    TlsReport,
)
from reports.parsed import Rejection, TlsFailureDetail, TlsPolicyResult
from reports.parsed import TlsReport as ParsedTlsReport
from reports.services import OutcomeStatus, report_store
from tests.reports.store_helpers import (
    BEGIN,
    END,
    document,
    mixed_rows,
    only_report,
    record,
    stored_message,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain(org):
    return Domain.objects.create(organisation=org, name="example.com")


def test_report_is_stored_with_its_records_and_totals(domain, org):
    message = stored_message()
    outcome = report_store(document(rows=mixed_rows()), message=message)
    assert outcome.status == OutcomeStatus.STORED
    assert outcome.reason == ""
    report = only_report(outcome)
    assert report.organisation == org
    assert report.domain == domain
    assert report.raw_message_id == message.pk
    assert (report.org_name, report.report_id, report.policy_domain) == (
        "google.com", "r-1", "example.com",
    )  # fmt: skip
    assert (report.date_begin, report.date_end) == (BEGIN, END)
    assert report.record_count == 5
    assert report.message_count == 26
    assert report.dmarc_pass_count == 10 + 5 + 7 + 1
    assert Record.objects.filter(report=report).count() == 5
    assert Record.objects.filter(report=report).aggregate(n=Sum("count"))["n"] == 26
    message.refresh_from_db()
    assert message.state == RawMessageState.STORED
    assert message.kind == "dmarc"
    assert message.processed_at is not None
    assert message.claimed_at is None


def test_record_fields_keep_every_auth_result(domain):
    outcome = report_store(document(rows=[record("192.0.2.1", 4)]), message=stored_message())
    stored = Record.objects.get(report=only_report(outcome))
    assert stored.day == BEGIN.date()
    assert stored.dkim_results == [
        {"domain": "example.com", "selector": "s1", "result": "pass", "human_result": ""}
    ]
    assert stored.spf_results == [{"domain": "example.com", "scope": "mfrom", "result": "pass"}]


def test_same_report_delivered_twice_is_stored_once(domain):
    first = report_store(document(rows=mixed_rows()), message=stored_message())
    second_message = stored_message()
    second = report_store(document(rows=mixed_rows()), message=second_message)
    assert second.status == OutcomeStatus.DUPLICATE
    assert [r.pk for r in second.reports] == [first.reports[0].pk]
    assert Report.objects.count() == 1
    assert Record.objects.count() == 5
    assert DailyRollup.objects.aggregate(n=Sum("messages"))["n"] == 26
    second_message.refresh_from_db()
    assert second_message.state == RawMessageState.DUPLICATE


def test_rollups_equal_the_sum_of_the_records(domain, org):
    rows = mixed_rows()
    report_store(document(rows=rows), message=stored_message())
    report_store(
        document(rows=rows[:3], org_name="yahoo.com", report_id="y-1"), message=stored_message()
    )
    expected: collections.Counter[tuple[object, ...]] = collections.Counter()
    selectors: collections.Counter[tuple[object, ...]] = collections.Counter()
    for stored in Record.objects.all():
        dkim_pass = any(a["result"] == "pass" for a in stored.dkim_results)
        spf_pass = any(a["result"] == "pass" for a in stored.spf_results)
        key = (stored.day, stored.source_ip, stored.header_from, stored.disposition,
               stored.dkim_aligned, stored.spf_aligned, dkim_pass, spf_pass)  # fmt: skip
        expected[key] += stored.count
        for auth in stored.dkim_results:
            selectors[(stored.day, auth["domain"], auth["selector"], auth["result"])] += (
                stored.count
            )
    rollups = {
        (r.day, r.source_ip, r.header_from, r.disposition, r.dkim_aligned, r.spf_aligned,
         r.dkim_pass, r.spf_pass): r.messages
        for r in DailyRollup.objects.filter(organisation=org, policy_domain="example.com")
    }  # fmt: skip
    assert rollups == dict(expected)
    assert DailyRollup.objects.count() == len(expected)
    seen = {
        (s.day, s.dkim_domain, s.selector, s.result): s.messages
        for s in DailySelector.objects.filter(organisation=org, policy_domain="example.com")
    }
    assert seen == dict(selectors)


def test_record_stream_failing_part_way_stores_nothing(domain):
    with pytest.raises(Rejection):
        report_store(document(rows=mixed_rows(), fail_after=3), message=stored_message())
    assert Report.objects.count() == 0
    assert Record.objects.count() == 0
    assert DailyRollup.objects.count() == 0
    assert DailySelector.objects.count() == 0


def test_many_records_are_written_in_batches(domain, monkeypatch):
    from reports import services

    monkeypatch.setattr(services, "RECORD_BATCH", 7)
    monkeypatch.setattr(services, "ROLLUP_FLUSH_KEYS", 5)
    rows = [record(f"10.0.{i // 250}.{i % 250}", 1 + i % 3) for i in range(100)]
    outcome = report_store(document(rows=rows), message=stored_message())
    report = only_report(outcome)
    assert report.record_count == 100
    assert Record.objects.filter(report=report).count() == 100
    assert DailyRollup.objects.aggregate(n=Sum("messages"))["n"] == report.message_count
    assert DailySelector.objects.aggregate(n=Sum("messages"))["n"] == report.message_count


def test_report_for_a_domain_in_no_organisation_is_kept_unmatched(org):
    message = stored_message()
    outcome = report_store(document("unknown.example", rows=mixed_rows()), message=message)
    assert outcome.status == OutcomeStatus.STORED
    assert outcome.reason == "unmatched"
    report = only_report(outcome)
    assert report.organisation is None
    assert report.record_count == 5
    assert DailyRollup.objects.count() == 0  # no dashboard shows reports of no organisation
    message.refresh_from_db()
    assert (message.state, message.reason) == (RawMessageState.STORED, "unmatched")
    again = report_store(document("unknown.example", rows=mixed_rows()), message=stored_message())
    assert again.status == OutcomeStatus.DUPLICATE
    assert Report.objects.count() == 1


def test_report_goes_to_every_organisation_with_the_domain(domain, org, other_org):
    Domain.objects.create(organisation=other_org, name="example.com")
    outcome = report_store(document(rows=mixed_rows()), message=stored_message())
    assert {r.organisation_id for r in outcome.reports} == {org.pk, other_org.pk}
    assert Record.objects.count() == 10
    for organisation in (org, other_org):
        total = DailyRollup.objects.filter(organisation=organisation).aggregate(n=Sum("messages"))
        assert total["n"] == 26


def test_message_of_an_organisation_stores_only_for_it(domain, org, other_org):
    Domain.objects.create(organisation=other_org, name="example.com")
    third = organisation_create(name="Third", actor=None)
    outcome = report_store(
        document("elsewhere.example", rows=mixed_rows()), message=stored_message(organisation=third)
    )
    (report,) = outcome.reports
    assert report.organisation == third
    assert report.domain is None
    assert outcome.reason == ""


def test_same_report_in_another_organisation_is_not_a_duplicate(domain, org, other_org):
    report_store(document(rows=mixed_rows()), message=stored_message(organisation=org))
    outcome = report_store(
        document(rows=mixed_rows()), message=stored_message(organisation=other_org)
    )
    assert outcome.status == OutcomeStatus.STORED
    assert Report.objects.count() == 2


def test_nul_and_overlong_text_is_stored_escaped_and_cut(domain):
    rows = [record("192.0.2.1", 1, header_from="bad\x00" + "x" * 400)]
    outcome = report_store(
        document(rows=rows, org_name="evil\x00.example", report_id="r" * 400),
        message=stored_message(),
    )
    report = only_report(outcome)
    assert report.org_name == "evil\\x00.example"
    assert len(report.report_id) == 255
    stored = Record.objects.get(report=report)
    assert stored.header_from.startswith("bad\\x00x")
    assert len(stored.header_from) == 253


def _tls_report(domain: str = "example.com") -> ParsedTlsReport:
    return ParsedTlsReport(
        org_name="Google Inc.",
        report_id="2026-11-30T00:00:00Z_example.com",
        contact_info="smtp-tls-reporting@google.com",
        date_begin=BEGIN,
        date_end=END,
        policies=(
            TlsPolicyResult(
                policy_type="sts",
                policy_domain=domain,
                policy_strings=("version: STSv1", "mode: enforce"),
                mx_hosts=("mx1.example.com",),
                successful_sessions=100,
                failed_sessions=3,
                failures=(
                    TlsFailureDetail(
                        "certificate-expired",
                        3,
                        sending_mta_ip="192.0.2.7",
                        receiving_mx_hostname="mx1.example.com",
                    ),
                ),
            ),
        ),
    )


def test_tls_report_is_stored_once_with_policies_and_failures(domain, org):
    message = stored_message()
    outcome = report_store(_tls_report(), message=message)
    assert outcome.status == OutcomeStatus.STORED
    (report,) = outcome.reports
    assert isinstance(report, TlsReport)
    assert report.organisation == org
    assert (report.successful_sessions, report.failed_sessions) == (100, 3)
    policy = TlsPolicy.objects.get(report=report)
    assert policy.mx_hosts == ["mx1.example.com"]
    failure = TlsFailure.objects.get(policy=policy)
    assert (failure.result_type, failure.failed_session_count) == ("certificate-expired", 3)
    message.refresh_from_db()
    assert message.kind == "tlsrpt"
    again = report_store(_tls_report(), message=stored_message())
    assert again.status == OutcomeStatus.DUPLICATE
    assert TlsReport.objects.count() == 1
    assert TlsFailure.objects.count() == 1


def test_outcome_as_dict_has_the_contract_fields(domain, org):
    outcome = report_store(document(rows=mixed_rows()), message=stored_message())
    data = outcome.as_dict()
    assert data["status"] == "stored"
    assert data["report"] == {
        "id": outcome.reports[0].pk,
        "kind": "dmarc",
        "organisation": org.slug,
        "unmatched": False,
        "org_name": "google.com",
        "report_id": "r-1",
        "domain": "example.com",
        "date_begin": BEGIN.isoformat(),
        "date_end": END.isoformat(),
        "record_count": 5,
        "message_count": 26,
        "dmarc_pass_count": 23,
    }
    assert RawMessage.objects.count() == 1


def test_a_value_the_database_refuses_is_a_database_error_and_stores_nothing(domain):
    rows = [*mixed_rows(), record("192.0.2.9", -1)]  # a count below the column's CHECK
    with pytest.raises(DatabaseError):
        report_store(document(rows=rows), message=stored_message())
    assert Report.objects.count() == 0
    assert Record.objects.count() == 0
