"""The pipeline on real samples: claim, parse, store once, quarantine; the sweep and retention."""

from __future__ import annotations

import datetime as dt
import gzip
import socket
import subprocess
import sys

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from dns_records.models import Domain
from mailsec.models import AuditLog
from reports import services
from reports.models import (
    DailyRollup,
    DailySelector,
    IngestSource,
    RawMessage,
    RawMessageState,
    Record,
    Report,
)
from reports.parse import Limits
from reports.services import (
    CLAIM_TIMEOUT,
    MAX_ATTEMPTS,
    QUEUE_GRACE,
    OutcomeStatus,
    raw_message_claim,
    raw_message_delete,
    raw_message_process,
    raw_message_reprocess,
    raw_message_store,
    raw_messages_due,
    reports_prune,
)
from tests.reports.generate import aggregate_xml
from tests.reports.store_helpers import only_report, process
from tests.reports.test_parse_samples import ALL_SAMPLES, EXPECTED, REJECTED, SAMPLES

pytestmark = pytest.mark.django_db


def _store(content: bytes, organisation=None, source=IngestSource.COMMAND) -> RawMessage:
    return raw_message_store(
        content,
        source=source,
        organisation_id=organisation.pk if organisation else None,
        parse=False,
    )


def _process(content: bytes, organisation=None) -> services.ProcessOutcome:
    return process(_store(content, organisation).pk)


@pytest.mark.parametrize("path", ALL_SAMPLES, ids=lambda p: p.name)
def test_every_sample_is_stored_or_quarantined_with_its_reason(path):
    message = _store(path.read_bytes())
    outcome = process(message.pk)
    message.refresh_from_db()
    if path.name in REJECTED:
        assert outcome.status == OutcomeStatus.REJECTED
        assert outcome.reason == REJECTED[path.name]
        assert (message.state, message.reason) == (RawMessageState.QUARANTINED, outcome.reason)
        assert Report.objects.count() == 0
        return
    reporter, report_id, domain, begin, end, records, messages, _schema = EXPECTED[path.name]
    assert outcome.status == OutcomeStatus.STORED, outcome
    report = only_report(outcome)
    assert (report.org_name, report.report_id, report.policy_domain) == (
        reporter, report_id, domain,
    )  # fmt: skip
    assert (int(report.date_begin.timestamp()), int(report.date_end.timestamp())) == (begin, end)
    assert (report.record_count, report.message_count) == (records, messages)
    assert Record.objects.filter(report=report).count() == records
    assert report.organisation is None and outcome.reason == "unmatched"
    assert message.state == RawMessageState.STORED


def test_sample_for_an_organisations_domain_fills_its_rollups(org):
    Domain.objects.create(organisation=org, name="example.com")
    path = SAMPLES / "parsedmarc/samples/aggregate/!large-example.com!1711897200!1711983600.xml"
    if not path.exists():
        path = next(p for p in ALL_SAMPLES if p.name.startswith("usssa.com"))
    outcome = _process(path.read_bytes())
    report = only_report(outcome)
    assert report.organisation == org
    rollup_total = sum(r.messages for r in DailyRollup.objects.filter(organisation=org))
    assert rollup_total == report.message_count


def test_one_report_in_three_shapes_is_stored_once(org):
    shapes = sorted(p for p in ALL_SAMPLES if p.name.startswith("nice-input.xml"))
    assert len(shapes) == 3
    statuses = [_process(path.read_bytes()).status for path in shapes]
    assert statuses == [OutcomeStatus.STORED, OutcomeStatus.DUPLICATE, OutcomeStatus.DUPLICATE]
    assert Report.objects.count() == 1
    states = sorted(RawMessage.objects.values_list("state", flat=True))
    assert states == ["duplicate", "duplicate", "stored"]


def test_a_message_is_processed_once(org):
    message = _store(aggregate_xml(3))
    assert process(message.pk).status == OutcomeStatus.STORED
    assert raw_message_process(raw_message_id=message.pk) is None
    assert Report.objects.count() == 1
    message.refresh_from_db()
    assert message.attempts == 1


def test_a_claimed_message_cannot_be_claimed_again_until_the_claim_expires():
    message = _store(aggregate_xml(1))
    now = timezone.now()
    assert raw_message_claim(raw_message_id=message.pk, now=now) is not None
    assert raw_message_claim(raw_message_id=message.pk, now=now + dt.timedelta(seconds=5)) is None
    later = now + CLAIM_TIMEOUT + dt.timedelta(seconds=1)
    claimed = raw_message_claim(raw_message_id=message.pk, now=later, claimer="other:1")
    assert claimed is not None
    assert claimed.attempts == 2
    assert claimed.claimed_by == "other:1"


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once():
    message = _store(aggregate_xml(1))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = f"{socket.gethostname()}:{int(gone.stdout)}"
    assert raw_message_claim(raw_message_id=message.pk, claimer=dead) is not None
    assert raw_message_claim(raw_message_id=message.pk, claimer="elsewhere:1") is not None
    # A live claimer (this process) keeps its claim.
    live = _store(aggregate_xml(1, report_id="live"))
    assert raw_message_claim(raw_message_id=live.pk) is not None
    assert raw_message_claim(raw_message_id=live.pk, claimer="elsewhere:1") is None


def test_a_message_that_never_finishes_is_quarantined_after_the_attempts():
    message = _store(aggregate_xml(1))
    now = timezone.now()
    for attempt in range(MAX_ATTEMPTS):
        at = now + (CLAIM_TIMEOUT + dt.timedelta(seconds=1)) * attempt
        assert raw_message_claim(raw_message_id=message.pk, now=at) is not None, attempt
    RawMessage.objects.filter(pk=message.pk).update(claimed_at=now - CLAIM_TIMEOUT * 2)
    outcome = process(message.pk)
    assert (outcome.status, outcome.reason) == (OutcomeStatus.REJECTED, "parse_failed")
    message.refresh_from_db()
    assert (message.state, message.reason) == (RawMessageState.QUARANTINED, "parse_failed")
    assert Report.objects.count() == 0


def test_records_failing_part_way_store_nothing_and_quarantine(org, monkeypatch):
    Domain.objects.create(organisation=org, name="example.com")
    monkeypatch.setattr(services, "RECORD_BATCH", 20)
    monkeypatch.setattr(services, "parse_limits", lambda: Limits(max_records=100))
    message = _store(aggregate_xml(300))
    outcome = process(message.pk)
    assert (outcome.status, outcome.reason) == (OutcomeStatus.REJECTED, "too_many_records")
    assert Report.objects.count() == 0
    assert Record.objects.count() == 0
    assert DailyRollup.objects.count() == 0 and DailySelector.objects.count() == 0
    message.refresh_from_db()
    assert message.state == RawMessageState.QUARANTINED
    assert "100" in message.detail


def test_hostile_input_is_quarantined_with_its_reason():
    bomb = gzip.compress(b"<feedback>" + b" " * (60 * 1024 * 1024))
    outcome = _process(bomb)
    assert (outcome.status, outcome.reason) == (OutcomeStatus.REJECTED, "compression_ratio")
    doctype = b'<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY a "b">]><feedback/>'
    assert _process(doctype).reason == "forbidden_dtd"


def test_sweep_finds_lost_expired_and_orphaned_claims():
    now = timezone.now()
    fresh = _store(aggregate_xml(1, report_id="fresh"))
    lost = _store(aggregate_xml(1, report_id="lost"))
    RawMessage.objects.filter(pk=lost.pk).update(received_at=now - QUEUE_GRACE * 2)
    expired = _store(aggregate_xml(1, report_id="expired"))
    RawMessage.objects.filter(pk=expired.pk).update(
        claimed_at=now - CLAIM_TIMEOUT * 2, claimed_by="elsewhere:1"
    )
    running = _store(aggregate_xml(1, report_id="running"))
    RawMessage.objects.filter(pk=running.pk).update(
        claimed_at=now, claimed_by=services.current_claimer()
    )
    done = _store(aggregate_xml(1, report_id="done"))
    raw_message_process(raw_message_id=done.pk)
    RawMessage.objects.filter(pk=done.pk).update(received_at=now - QUEUE_GRACE * 2)
    due = raw_messages_due(now=now)
    assert sorted(due) == sorted([lost.pk, expired.pk])
    assert fresh.pk not in due


def test_prune_deletes_what_is_older_than_the_window(org, settings):
    Domain.objects.create(organisation=org, name="example.com")
    settings.MAILSEC_REPORT_RETENTION_DAYS = 30
    now = timezone.now()
    old_begin = int((now - dt.timedelta(days=40)).timestamp())
    new_begin = int((now - dt.timedelta(days=2)).timestamp())
    old = _process(aggregate_xml(5, report_id="old", begin=old_begin))
    new = _process(aggregate_xml(4, report_id="new", begin=new_begin))
    RawMessage.objects.filter(reports__report_id="old").update(
        received_at=now - dt.timedelta(days=39)
    )
    counts = reports_prune(now=now)
    assert counts["reports"] == 1 and counts["records"] == 5 and counts["raw_messages"] == 1
    assert list(Report.objects.values_list("report_id", flat=True)) == ["new"]
    assert Record.objects.count() == 4
    cutoff = (now - dt.timedelta(days=30)).date()
    assert not DailyRollup.objects.filter(day__lt=cutoff).exists()
    assert DailyRollup.objects.exists() and DailySelector.objects.exists()
    assert RawMessage.objects.count() == 1
    assert old.reports[0].pk != new.reports[0].pk


# --- the quarantine -------------------------------------------------------------------------


@pytest.fixture
def quarantined(org):
    message = _store(b"", organisation=org, source=IngestSource.UPLOAD)
    raw_message_process(raw_message_id=message.pk)
    message.refresh_from_db()
    assert message.state == RawMessageState.QUARANTINED
    return message


def test_admin_reprocesses_a_quarantined_message_audited(quarantined, owner, org):
    message = raw_message_reprocess(raw_message_id=quarantined.pk, actor=owner)
    assert (message.state, message.reason, message.attempts) == (RawMessageState.PENDING, "", 0)
    entry = AuditLog.objects.get(action="report.raw_message.reprocess")
    assert entry.organisation == org and entry.actor == owner
    assert entry.before is not None and entry.before["reason"] == "empty"
    # Parsed again (the parser still refuses an empty file).
    outcome = process(message.pk)
    assert outcome.reason == "empty"


def test_only_a_quarantined_message_can_be_reprocessed(owner, org):
    message = _store(aggregate_xml(1), organisation=org)
    raw_message_process(raw_message_id=message.pk)
    with pytest.raises(ValidationError):
        raw_message_reprocess(raw_message_id=message.pk, actor=owner)


def test_viewers_and_outsiders_cannot_reprocess_or_delete(quarantined, viewer, outsider):
    for actor in (viewer, outsider, None):
        with pytest.raises(PermissionDenied):
            raw_message_reprocess(raw_message_id=quarantined.pk, actor=actor)
        with pytest.raises(PermissionDenied):
            raw_message_delete(raw_message_id=quarantined.pk, actor=actor)
    assert not AuditLog.objects.filter(action__startswith="report.raw_message").exists()


def test_messages_of_no_organisation_are_for_superusers_only(owner, django_user_model):
    message = _store(b"")
    raw_message_process(raw_message_id=message.pk)
    with pytest.raises(PermissionDenied):
        raw_message_reprocess(raw_message_id=message.pk, actor=owner)
    admin = django_user_model.objects.create_superuser("root", password="x" * 20)
    raw_message_reprocess(raw_message_id=message.pk, actor=admin)
    assert AuditLog.objects.get(action="report.raw_message.reprocess").organisation is None


def test_admin_deletes_a_message_audited_and_reports_stay(owner, org):
    message = _store(aggregate_xml(2), organisation=org)
    outcome = process(message.pk)
    raw_message_delete(raw_message_id=message.pk, actor=owner)
    assert not RawMessage.objects.filter(pk=message.pk).exists()
    report = Report.objects.get(pk=only_report(outcome).pk)
    assert report.raw_message is None
    entry = AuditLog.objects.get(action="report.raw_message.delete")
    assert entry.before is not None and entry.before["sha256"] == message.sha256


def test_quarantine_lists_an_organisations_messages_to_its_members_only(
    quarantined, owner, outsider, django_user_model
):
    from reports.selectors import quarantine_visible

    orphan = _store(b"")
    raw_message_process(raw_message_id=orphan.pk)
    assert list(quarantine_visible(owner)) == [quarantined]
    assert list(quarantine_visible(outsider)) == []
    admin = django_user_model.objects.create_superuser("root", password="x" * 20)
    assert orphan in list(quarantine_visible(admin))


def test_beat_runs_the_sweep_and_the_prune_and_the_parse_outlives_no_claim(settings):
    from mailsec.celery import app
    from reports import tasks

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    for name in ("reports.tasks.sweep_pending_messages", "reports.tasks.prune_reports"):
        assert name in scheduled
        assert name in app.tasks
    assert "reports.tasks.parse_raw_message" in app.tasks
    # A claim older than CLAIM_TIMEOUT must belong to a parse the hard limit has ended.
    assert CLAIM_TIMEOUT.total_seconds() > tasks.PARSE_HARD_LIMIT
    assert app.tasks["reports.tasks.parse_raw_message"].acks_late is True
