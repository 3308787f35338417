"""Write use-cases of the reports app: store what arrives, parse it, store each report once.

The pipeline: a way in stores the raw message (`raw_message_store`) and a worker task parses it
(`raw_message_process`): claim the message, parse it, then in one transaction store the report
with all its records, add its counts to the daily rollups and mark the message. A message is
stored once; a report is stored once per organisation however often it arrives.

Automatic ingest (the listener, the pipe, IMAP, the worker, `ingest_report`) writes no audit
record per message or report: the raw message row (its state, reason and times) is the record
of what arrived and what became of it, and an audit row per report would double the writes of a
busy receiver. What a person does is audited: an upload, re-processing or deleting a message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    models,
    transaction,
)
from django.db.models import F, Q
from django.utils import timezone

from dns_records.models import Domain
from dns_records.names import InvalidDomainName, normalise_domain
from mailsec.models import Organisation
from mailsec.selectors import can_write
from mailsec.services.audit import Actor, audit_record
from reports import parsed
from reports.models import (
    DailyRollup,
    DailySelector,
    IngestSource,
    RawMessage,
    RawMessageState,
    Record,
    Report,
    TlsFailure,
    TlsPolicy,
    TlsReport,
)
from reports.parse import Limits, parse_message

__all__ = [
    "CLAIM_TIMEOUT",
    "MAX_ATTEMPTS",
    "QUARANTINE_REASONS",
    "MessageTooLarge",
    "OutcomeStatus",
    "ProcessOutcome",
    "raw_message_claim",
    "raw_message_delete",
    "raw_message_process",
    "raw_message_release",
    "raw_message_reprocess",
    "raw_message_store",
    "raw_messages_due",
    "report_store",
    "report_upload",
    "reports_prune",
]

logger = logging.getLogger(__name__)

# A claim older than this belongs to a parse that died (the parse task's hard time limit is
# shorter), so the message may be claimed again.
CLAIM_TIMEOUT = timedelta(minutes=30)
# Claims a message may have; the next one quarantines it ("parse_failed"), so a message that
# kills or stalls every worker that parses it cannot loop forever.
MAX_ATTEMPTS = 3
# A pending message nobody has claimed for this long lost its task (broker down when it was
# queued, a task dropped): the sweep queues it again.
QUEUE_GRACE = timedelta(minutes=5)
# Records written per INSERT, and rollup keys held before they are added to the table: memory
# stays flat however large the report.
RECORD_BATCH = 2000
ROLLUP_FLUSH_KEYS = 20_000
UPSERT_ROWS = 500

# Why a message is in quarantine: the parser's reasons and the pipeline's own.
QUARANTINE_REASONS: dict[str, str] = {
    **parsed.REJECTION_REASONS,
    "parse_failed": "Parsing stopped without finishing on every attempt (killed or out of time)",
    "parse_error": "The parser failed on this message (a bug: re-process it after a fix)",
    "store_error": "The report could not be stored (a value the database refuses)",
}


class MessageTooLarge(ValueError):
    """A message over MAILSEC_REPORT_MAX_MESSAGE_BYTES: refused before anything is stored."""


class OutcomeStatus(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ProcessOutcome:
    """What became of one message: stored (new reports), duplicate (all already stored) or
    rejected (quarantined with `reason` and `detail`).

    `reports` are the message's reports (DMARC `Report` or `TlsReport`), one per organisation
    it was stored for; for a duplicate, the copies stored before. `reason` is "unmatched" for a
    report stored for no organisation (no organisation has its domain).
    """

    status: OutcomeStatus
    reason: str = ""
    detail: str = ""
    reports: tuple[Report | TlsReport, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The shape `ingest_report --json` prints and the upload API answers (report: the
        first copy; reports: every copy, one per organisation)."""
        summaries = [report_summary(report) for report in self.reports]
        return {
            "status": str(self.status),
            "reason": self.reason,
            "detail": self.detail,
            "report": summaries[0] if summaries else None,
            "reports": summaries,
        }


def report_summary(report: Report | TlsReport) -> dict[str, Any]:
    organisation = report.organisation
    summary: dict[str, Any] = {
        "id": report.pk,
        "kind": "tlsrpt" if isinstance(report, TlsReport) else "dmarc",
        "organisation": organisation.slug if organisation is not None else None,
        "unmatched": organisation is None,
        "org_name": report.org_name,
        "report_id": report.report_id,
        "domain": report.policy_domain,
        "date_begin": report.date_begin.isoformat(),
        "date_end": report.date_end.isoformat(),
    }
    if isinstance(report, TlsReport):
        summary["successful_sessions"] = report.successful_sessions
        summary["failed_sessions"] = report.failed_sessions
    else:
        summary["record_count"] = report.record_count
        summary["message_count"] = report.message_count
        summary["dmarc_pass_count"] = report.dmarc_pass_count
    return summary


# --- storing what arrives -------------------------------------------------------------------


def raw_message_store(
    content: bytes,
    *,
    source: IngestSource,
    organisation_id: int | None = None,
    filename: str = "",
    envelope_from: str = "",
    envelope_to: Iterable[str] = (),
    remote_addr: str = "",
    parse: bool = True,
) -> RawMessage:
    """Store a received message durably and queue its parse once the transaction commits.

    Returns once the row is committed (in autocommit) or queued for the caller's commit. Raises
    `MessageTooLarge` for an oversized message and lets database errors through, so a way in can
    answer "try again later" instead of accepting what it could not keep. With `parse=False`
    the caller parses it itself (`raw_message_process`); the sweep still would if it died.
    """
    if len(content) > settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"{len(content)} bytes; the limit is {settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES}"
        )
    with transaction.atomic():
        message = RawMessage.objects.create(
            organisation_id=organisation_id,
            source=source,
            content=content,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            filename=_clip(filename, 255),
            envelope_from=_clip(envelope_from, 320),
            envelope_to=_clip(",".join(envelope_to), 1000),
            remote_addr=_clip(remote_addr, 64),
        )
        if parse:
            message_id = message.pk
            transaction.on_commit(lambda: _enqueue_parse(message_id))
    return message


def _enqueue_parse(message_id: int) -> None:
    """Queue the parse task. The message is already stored: if the broker cannot take the task
    now, the sweep (`sweep_pending_messages`) queues it later, so the way in still succeeds."""
    from celery import current_app

    try:
        current_app.send_task(
            "reports.tasks.parse_raw_message", kwargs={"raw_message_id": message_id}
        )
    except Exception as exc:
        logger.warning(
            "could not queue the parse of raw message %s (%s: %s); the sweep will",
            message_id,
            type(exc).__name__,
            exc,
        )


def report_upload(
    *, organisation: Organisation, content: bytes, filename: str, actor: Actor
) -> tuple[RawMessage, ProcessOutcome]:
    """A member uploads a report file or message (API, dashboard): stored, then parsed at once.

    Admins and owners only; audited. The message is committed before it is parsed, so a parse
    that dies (a request timeout) leaves it to the sweep and the worker, never lost.
    """
    _require_write(actor, organisation)
    message = raw_message_store(
        content,
        source=IngestSource.UPLOAD,
        organisation_id=organisation.pk,
        filename=filename,
        parse=False,
    )
    audit_record(
        actor=actor,
        action="report.upload",
        obj=message,
        organisation=organisation,
        after={"filename": message.filename, "size": message.size, "sha256": message.sha256},
    )
    outcome = raw_message_process(raw_message_id=message.pk)
    if outcome is None:  # only if the sweep took it meanwhile: report what it made of it
        outcome = raw_message_outcome(raw_message_id=message.pk)
    return message, outcome


# --- parsing: claim, parse, store -----------------------------------------------------------


def current_claimer() -> str:
    """This process, as it signs the messages it claims: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claimer_gone(claimer: str) -> bool:
    """True only when the claimer was a process on this host that no longer exists."""
    host, _, pid = claimer.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def raw_message_claim(
    *, raw_message_id: int, now: datetime | None = None, claimer: str = ""
) -> RawMessage | None:
    """Take a pending message for parsing, or None when it is not ours to parse.

    A conditional UPDATE: the message must be pending and unclaimed, or claimed longer ago than
    CLAIM_TIMEOUT, or claimed by a process of this host that no longer exists (a worker killed
    mid-parse; Celery redelivers its task). Two workers given the same message never both get it.
    """
    now = now or timezone.now()
    claimer = claimer or current_claimer()
    claimable = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    holder = (
        RawMessage.objects.filter(
            pk=raw_message_id, state=RawMessageState.PENDING, claimed_at__isnull=False
        )
        .values_list("claimed_by", flat=True)
        .first()
    )
    if holder and _claimer_gone(holder):
        claimable |= Q(claimed_by=holder)
    updated = RawMessage.objects.filter(
        claimable, pk=raw_message_id, state=RawMessageState.PENDING
    ).update(claimed_at=now, claimed_by=claimer[:255], attempts=F("attempts") + 1)
    if updated != 1:
        return None
    return RawMessage.objects.get(pk=raw_message_id)


def raw_message_release(*, raw_message_id: int, claimer: str = "") -> None:
    """Give a claimed message back (a transient failure): the sweep queues it again."""
    RawMessage.objects.filter(
        pk=raw_message_id,
        state=RawMessageState.PENDING,
        claimed_by=(claimer or current_claimer())[:255],
    ).update(claimed_at=None, claimed_by="")


def raw_message_process(*, raw_message_id: int) -> ProcessOutcome | None:
    """Claim, parse and store one message; None when it was not claimable (already done, or
    another process holds it), so a task delivered twice does nothing the second time.

    A `Rejection`, a record stream failing part-way or a value the database refuses stores
    nothing of the report and quarantines the message with the reason. A lost database
    connection or the task's soft time limit gives the message back (still pending) and
    re-raises: it is parsed again later, at most MAX_ATTEMPTS times.
    """
    claimer = current_claimer()
    message = raw_message_claim(raw_message_id=raw_message_id, claimer=claimer)
    if message is None:
        logger.info("raw message %s is not pending or is being parsed; skipped", raw_message_id)
        return None
    if message.attempts > MAX_ATTEMPTS:
        return _quarantine(
            message,
            "parse_failed",
            f"Claimed {message.attempts - 1} times without finishing: the process parsing it "
            "was killed or ran out of time each time.",
        )
    try:
        document = parse_message(bytes(message.content), limits=parse_limits())
        return report_store(document, message=message)
    except parsed.Rejection as exc:
        return _quarantine(message, exc.reason, exc.detail)
    except (SoftTimeLimitExceeded, OperationalError, InterfaceError):
        _release_after_failure(message.pk, claimer)
        raise
    except DatabaseError as exc:
        logger.exception("raw message %s: the report could not be stored", message.pk)
        return _quarantine(message, "store_error", f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        logger.exception("raw message %s: the parser failed", message.pk)
        return _quarantine(message, "parse_error", f"{type(exc).__name__}: {exc}")


def _release_after_failure(raw_message_id: int, claimer: str) -> None:
    """Give the message back after an interruption. A time limit may have struck mid-query and
    left the connection unusable: then a fresh one gives it back. If even that fails, the claim
    stays and expires after CLAIM_TIMEOUT."""
    try:
        raw_message_release(raw_message_id=raw_message_id, claimer=claimer)
        return
    except DatabaseError:
        if connection.in_atomic_block:
            raise
        connection.close()
    try:
        raw_message_release(raw_message_id=raw_message_id, claimer=claimer)
    except DatabaseError:
        logger.warning("raw message %s: could not release the claim", raw_message_id)


def parse_limits() -> Limits:
    """How far a received report may expand: the settings' size, the parser's other bounds."""
    return Limits(max_decompressed_bytes=settings.MAILSEC_REPORT_MAX_DECOMPRESSED_BYTES)


def raw_message_outcome(*, raw_message_id: int) -> ProcessOutcome:
    """What processing recorded for a message: its state, reason and reports."""
    message = RawMessage.objects.defer("content").get(pk=raw_message_id)
    if message.state == RawMessageState.QUARANTINED:
        return ProcessOutcome(OutcomeStatus.REJECTED, message.reason, message.detail)
    reports: list[Report | TlsReport] = [
        *Report.objects.filter(raw_message=message).select_related("organisation"),
        *TlsReport.objects.filter(raw_message=message).select_related("organisation"),
    ]
    status = (
        OutcomeStatus.DUPLICATE
        if message.state == RawMessageState.DUPLICATE
        else OutcomeStatus.STORED
    )
    return ProcessOutcome(status, message.reason, message.detail, tuple(reports))


def _quarantine(message: RawMessage, reason: str, detail: str) -> ProcessOutcome:
    detail = _clip(detail, 4000)
    RawMessage.objects.filter(pk=message.pk, state=RawMessageState.PENDING).update(
        state=RawMessageState.QUARANTINED,
        reason=reason[:40],
        detail=detail,
        processed_at=timezone.now(),
        claimed_at=None,
        claimed_by="",
    )
    logger.info("raw message %s quarantined: %s %s", message.pk, reason, detail[:200])
    return ProcessOutcome(OutcomeStatus.REJECTED, reason, detail)


def report_store(
    document: parsed.AggregateDocument | parsed.TlsReport, *, message: RawMessage
) -> ProcessOutcome:
    """Store a parsed report for its organisation(s) and mark the message, in one transaction.

    The organisation is the message's when the way in knew it, else every organisation with a
    domain of the report's policy domain; with none, the report is stored for no organisation
    ("unmatched"). A report already stored for an organisation (the unique delivery index) is
    not stored again: an INSERT ... ON CONFLICT DO NOTHING, so two workers storing the same
    report at once store it once. Raises whatever the record stream raises, storing nothing.
    """
    with transaction.atomic():
        if isinstance(document, parsed.TlsReport):
            kind = parsed.ReportKind.TLSRPT
            new, old = _tls_store(document, message=message)
        else:
            kind = parsed.ReportKind.DMARC
            new, old = _aggregate_store(document, message=message)
        # A copy this very message stored (a parse that lost its claim and ran twice) counts
        # as stored; one from another message makes this a duplicate delivery.
        own = [report for report in old if report.raw_message_id == message.pk]
        status = OutcomeStatus.STORED if new or own or not old else OutcomeStatus.DUPLICATE
        reports = _reload(new, kind) + own if status == OutcomeStatus.STORED else old
        unmatched = bool(reports) and all(r.organisation_id is None for r in reports)
        reason = "unmatched" if unmatched else ""
        detail = (
            f"No organisation has the domain {reports[0].policy_domain!r}; the report is kept "
            "for no organisation."
            if unmatched
            else ""
        )
        RawMessage.objects.filter(pk=message.pk).update(
            state=RawMessageState.STORED
            if status == OutcomeStatus.STORED
            else RawMessageState.DUPLICATE,
            kind=str(kind),
            reason=reason,
            detail=detail,
            processed_at=timezone.now(),
            claimed_at=None,
            claimed_by="",
        )
    return ProcessOutcome(status, reason, detail, tuple(reports))


def _reload(pks: list[int], kind: parsed.ReportKind) -> list[Report | TlsReport]:
    model: type[Report] | type[TlsReport] = (
        TlsReport if kind == parsed.ReportKind.TLSRPT else Report
    )
    return list(model.objects.filter(pk__in=pks).select_related("organisation").order_by("pk"))


def _clip(value: str, limit: int) -> str:
    """PostgreSQL refuses NUL in text: stored visibly escaped; longer than the column, cut."""
    return value.replace("\x00", "\\x00")[:limit]


def _domain_name(text: str) -> str:
    try:
        return normalise_domain(text)
    except InvalidDomainName:
        return _clip(text.strip().rstrip(".").lower(), 253)


def _targets(
    organisation_id: int | None, policy_domain: str
) -> list[tuple[int | None, int | None]]:
    """(organisation id, domain id) pairs a report is stored for; [(None, None)]: unmatched."""
    if organisation_id is not None:
        domain_id = (
            Domain.objects.filter(organisation_id=organisation_id, name=policy_domain)
            .values_list("pk", flat=True)
            .first()
        )
        return [(organisation_id, domain_id)]
    matches = list(
        Domain.objects.filter(name=policy_domain)
        .order_by("organisation_id")
        .values_list("organisation_id", "pk")
    )
    return [(org, dom) for org, dom in matches] or [(None, None)]


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a concrete field")
    return field


def _column(field: models.Field[Any, Any]) -> str:
    return connection.ops.quote_name(str(field.column))


def _insert_unless_stored(
    model: type[models.Model], values: dict[str, Any], unique: Sequence[str]
) -> int | None:
    """INSERT the row unless its delivery is already stored; the new id, or None.

    `unique` are the fields of the unique delivery index; the organisation decides which of the
    two partial indexes (per organisation, or among unmatched reports) is the conflict target.
    Table and column names come from the model, every value is a parameter.
    """
    quote = connection.ops.quote_name
    fields = [_field(model, name) for name in values]
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    if values["organisation"] is None:
        target_fields = [name for name in unique if name != "organisation"]
        where = f"{quote('organisation_id')} IS NULL"
    else:
        target_fields = list(unique)
        where = f"{quote('organisation_id')} IS NOT NULL"
    columns = ", ".join(_column(field) for field in fields)
    target = ", ".join(_column(_field(model, name)) for name in target_fields)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(params))}) "
        f"ON CONFLICT ({target}) WHERE {where} DO NOTHING "
        f"RETURNING {quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return int(row[0]) if row else None


REPORT_UNIQUE = ("organisation", "org_name", "report_id", "policy_domain", "date_begin", "date_end")
TLS_REPORT_UNIQUE = ("organisation", "org_name", "report_id", "policy_domain")


def _stored_copy(
    model: type[Report] | type[TlsReport], values: dict[str, Any], unique: Sequence[str]
) -> Report | TlsReport | None:
    lookup = {name: values[name] for name in unique if name != "organisation"}
    if values["organisation"] is None:
        lookup["organisation__isnull"] = True
    else:
        lookup["organisation_id"] = values["organisation"]
    found: Report | TlsReport | None = (
        model.objects.filter(**lookup).select_related("organisation").first()
    )
    return found


def _aggregate_store(
    document: parsed.AggregateDocument, *, message: RawMessage
) -> tuple[list[int], list[Report | TlsReport]]:
    header = document.header
    policy = header.policy
    policy_domain = _domain_name(policy.domain)
    pct = policy.pct if policy.pct is not None and 0 <= policy.pct <= 100 else None
    common: dict[str, Any] = {
        "raw_message": message.pk,
        "org_name": _clip(header.org_name, 255),
        "email": _clip(header.email, 320),
        "extra_contact_info": _clip(header.extra_contact_info, 500),
        "report_id": _clip(header.report_id, 255),
        "policy_domain": policy_domain,
        "date_begin": header.date_begin,
        "date_end": header.date_end,
        "schema": _clip(header.schema, 10),
        "generator": _clip(header.generator, 255),
        "errors": [_clip(error, 1000) for error in header.errors[:100]],
        "policy_p": _clip(policy.p, 12),
        "policy_sp": _clip(policy.sp, 12),
        "policy_np": _clip(policy.np, 12),
        "policy_pct": pct,
        "policy_adkim": _clip(policy.adkim, 2),
        "policy_aspf": _clip(policy.aspf, 2),
        "policy_fo": _clip(policy.fo, 20),
        "policy_testing": _clip(policy.testing, 2),
        "policy_discovery_method": _clip(policy.discovery_method, 12),
        "record_count": 0,
        "message_count": 0,
        "dmarc_pass_count": 0,
        "created_at": timezone.now(),
    }
    new: list[tuple[int, int | None]] = []
    old: list[Report | TlsReport] = []
    for organisation_id, domain_id in _targets(message.organisation_id, policy_domain):
        values = {**common, "organisation": organisation_id, "domain": domain_id}
        pk = _insert_unless_stored(Report, values, REPORT_UNIQUE)
        if pk is None:
            copy = _stored_copy(Report, values, REPORT_UNIQUE)
            if copy is not None:
                old.append(copy)
        else:
            new.append((pk, organisation_id))
    if new:
        day = header.date_begin.astimezone(UTC).date()
        totals = _records_store(document.records(), new, policy_domain=policy_domain, day=day)
        Report.objects.filter(pk__in=[pk for pk, _ in new]).update(
            record_count=totals.records,
            message_count=totals.messages,
            dmarc_pass_count=totals.dmarc_pass,
        )
    return [pk for pk, _ in new], old


@dataclass
class _Totals:
    records: int = 0
    messages: int = 0
    dmarc_pass: int = 0


RollupKey = tuple[int, date, str, str, str, str, str, bool, bool]
SelectorKey = tuple[int, date, str, str, str]


def _records_store(
    records: Iterator[parsed.AggregateRecord],
    reports: list[tuple[int, int | None]],
    *,
    policy_domain: str,
    day: date,
) -> _Totals:
    """Write the records of each new report copy in batches while the parser streams them,
    counting totals and adding rollups on the way; never a whole report in memory."""
    totals = _Totals()
    batch: list[tuple[Any, ...]] = []
    rollups: dict[RollupKey, int] = {}
    selectors: dict[SelectorKey, int] = {}
    organisations = [org for _, org in reports if org is not None]
    for record in records:
        totals.records += 1
        totals.messages += record.count
        if record.dmarc_pass:
            totals.dmarc_pass += record.count
        fields = _record_fields(record)
        values = tuple(fields[name] for name in RECORD_FIELDS[2:])
        batch.extend((pk, day, *values) for pk, _ in reports)
        if len(batch) >= RECORD_BATCH:
            _records_write(batch)
            batch.clear()
        if organisations:
            _rollup_add(rollups, selectors, organisations, record, fields, day)
            if len(rollups) + len(selectors) >= ROLLUP_FLUSH_KEYS:
                _rollups_flush(rollups, selectors, policy_domain)
    _records_write(batch)
    _rollups_flush(rollups, selectors, policy_domain)
    return totals


RECORD_FIELDS = (
    "report", "day", "source_ip", "count", "disposition", "dkim_aligned", "spf_aligned",
    "header_from", "envelope_from", "envelope_to", "reasons", "dkim_results", "spf_results",
)  # fmt: skip
RECORD_JSON_FIELDS = frozenset({"reasons", "dkim_results", "spf_results"})


def _records_write(rows: list[tuple[Any, ...]]) -> None:
    """Write record rows (RECORD_FIELDS order): on PostgreSQL by COPY, several times faster
    than INSERT for a large report; elsewhere (make run's SQLite) by a bulk INSERT."""
    if not rows:
        return
    fields = [_field(Record, name) for name in RECORD_FIELDS]
    if connection.vendor != "postgresql":
        Record.objects.bulk_create(
            (Record(**{f.attname: v for f, v in zip(fields, row, strict=True)}) for row in rows),
            batch_size=500,
        )
        return
    json_at = [i for i, name in enumerate(RECORD_FIELDS) if name in RECORD_JSON_FIELDS]
    columns = ", ".join(_column(field) for field in fields)
    table = connection.ops.quote_name(Record._meta.db_table)
    # The driver's own cursor does the COPY: its errors are made Django's, as for a query.
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            values = list(row)
            for i in json_at:
                values[i] = json.dumps(values[i])
            copy.write_row(values)


def _record_fields(record: parsed.AggregateRecord) -> dict[str, Any]:
    return {
        "source_ip": record.source_ip,
        "count": record.count,
        "disposition": _clip(record.disposition, 12),
        "dkim_aligned": _clip(record.dkim_aligned, 10),
        "spf_aligned": _clip(record.spf_aligned, 10),
        "header_from": _clip(record.header_from, 253),
        "envelope_from": _clip(record.envelope_from, 253),
        "envelope_to": _clip(record.envelope_to, 253),
        "reasons": [
            {"type": _clip(reason.type, 64), "comment": _clip(reason.comment, 1000)}
            for reason in record.reasons
        ],
        "dkim_results": [
            {
                "domain": _clip(auth.domain, 253),
                "selector": _clip(auth.selector, 253),
                "result": _clip(auth.result, 12),
                "human_result": _clip(auth.human_result, 1000),
            }
            for auth in record.dkim
        ],
        "spf_results": [
            {
                "domain": _clip(auth.domain, 253),
                "scope": _clip(auth.scope, 10),
                "result": _clip(auth.result, 12),
            }
            for auth in record.spf
        ],
    }


def _rollup_add(
    rollups: dict[RollupKey, int],
    selectors: dict[SelectorKey, int],
    organisations: list[int],
    record: parsed.AggregateRecord,
    fields: dict[str, Any],
    day: date,
) -> None:
    dkim_pass = any(auth.result == "pass" for auth in record.dkim)
    spf_pass = any(auth.result == "pass" for auth in record.spf)
    for organisation_id in organisations:
        key: RollupKey = (
            organisation_id, day, fields["source_ip"], fields["header_from"],
            fields["disposition"], fields["dkim_aligned"], fields["spf_aligned"],
            dkim_pass, spf_pass,
        )  # fmt: skip
        rollups[key] = rollups.get(key, 0) + record.count
        for auth in fields["dkim_results"]:
            selector_key: SelectorKey = (
                organisation_id, day, auth["domain"], auth["selector"], auth["result"],
            )  # fmt: skip
            selectors[selector_key] = selectors.get(selector_key, 0) + record.count


ROLLUP_COLUMNS = (
    "organisation", "day", "source_ip", "header_from", "disposition", "dkim_aligned",
    "spf_aligned", "dkim_pass", "spf_pass",
)  # fmt: skip
SELECTOR_COLUMNS = ("organisation", "day", "dkim_domain", "selector", "result")


def _rollups_flush(
    rollups: dict[RollupKey, int], selectors: dict[SelectorKey, int], policy_domain: str
) -> None:
    _upsert_add(DailyRollup, ROLLUP_COLUMNS, policy_domain, rollups)
    _upsert_add(DailySelector, SELECTOR_COLUMNS, policy_domain, selectors)
    rollups.clear()
    selectors.clear()


def _upsert_add(
    model: type[DailyRollup] | type[DailySelector],
    key_fields: Sequence[str],
    policy_domain: str,
    counts: dict[Any, int],
) -> None:
    """Add message counts to rollup rows, creating the missing ones: INSERT ... ON CONFLICT
    (the unique key) DO UPDATE SET messages = messages + EXCLUDED.messages, on PostgreSQL and
    SQLite alike (from a COPY-filled scratch table on PostgreSQL, in statements of UPSERT_ROWS
    keys elsewhere). Each key occurs once (counts were summed per key in memory), as
    PostgreSQL requires of one statement."""
    if not counts:
        return
    quote = connection.ops.quote_name
    names = ["policy_domain", *key_fields, "messages"]
    fields = [_field(model, name) for name in names]
    columns = ", ".join(_column(field) for field in fields)
    unique = next(c for c in model._meta.constraints if isinstance(c, models.UniqueConstraint))
    target = ", ".join(_column(_field(model, name)) for name in unique.fields)
    table = quote(model._meta.db_table)
    messages = quote("messages")
    add = f"DO UPDATE SET {messages} = {table}.{messages} + EXCLUDED.{messages}"
    if connection.vendor == "postgresql":
        # COPY into a scratch table of this transaction, then one INSERT ... SELECT: a
        # statement with thousands of parameters costs more to build than to run.
        staging = quote(f"staging_{model._meta.db_table}")
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DROP AS "  # noqa: S608
                f"SELECT {columns} FROM {table} WITH NO DATA"
            )
            with (
                connection.wrap_database_errors,
                cursor.cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy,
            ):
                for key, count in counts.items():
                    copy.write_row((policy_domain, *key, count))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} "  # noqa: S608
                f"ON CONFLICT ({target}) {add}"
            )
            cursor.execute(f"TRUNCATE {staging}")
        return
    items = list(counts.items())
    for start in range(0, len(items), UPSERT_ROWS):
        chunk = items[start : start + UPSERT_ROWS]
        params: list[Any] = []
        for key, count in chunk:
            row = [policy_domain, *key, count]
            params.extend(
                field.get_db_prep_save(value, connection)
                for field, value in zip(fields, row, strict=True)
            )
        one = "(" + ", ".join(["%s"] * len(names)) + ")"
        sql = (
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(chunk))} "  # noqa: S608
            f"ON CONFLICT ({target}) {add}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _tls_store(
    report: parsed.TlsReport, *, message: RawMessage
) -> tuple[list[int], list[Report | TlsReport]]:
    policy_domain = _domain_name(report.policy_domain)
    common: dict[str, Any] = {
        "raw_message": message.pk,
        "org_name": _clip(report.org_name, 255),
        "report_id": _clip(report.report_id, 255),
        "contact_info": _clip(report.contact_info, 500),
        "policy_domain": policy_domain,
        "date_begin": report.date_begin,
        "date_end": report.date_end,
        "successful_sessions": report.successful_sessions,
        "failed_sessions": report.failed_sessions,
        "created_at": timezone.now(),
    }
    new: list[int] = []
    old: list[Report | TlsReport] = []
    for organisation_id, domain_id in _targets(message.organisation_id, policy_domain):
        values = {**common, "organisation": organisation_id, "domain": domain_id}
        pk = _insert_unless_stored(TlsReport, values, TLS_REPORT_UNIQUE)
        if pk is None:
            copy = _stored_copy(TlsReport, values, TLS_REPORT_UNIQUE)
            if copy is not None:
                old.append(copy)
            continue
        new.append(pk)
        for result in report.policies:
            policy = TlsPolicy.objects.create(
                report_id=pk,
                policy_type=_clip(result.policy_type, 20),
                policy_domain=_clip(result.policy_domain, 253),
                policy_strings=[_clip(text, 1000) for text in result.policy_strings[:100]],
                mx_hosts=[_clip(host, 253) for host in result.mx_hosts[:100]],
                successful_sessions=result.successful_sessions,
                failed_sessions=result.failed_sessions,
            )
            TlsFailure.objects.bulk_create(
                TlsFailure(
                    policy=policy,
                    result_type=_clip(failure.result_type, 64),
                    failed_session_count=failure.failed_session_count,
                    sending_mta_ip=_clip(failure.sending_mta_ip, 64),
                    receiving_mx_hostname=_clip(failure.receiving_mx_hostname, 253),
                    receiving_mx_helo=_clip(failure.receiving_mx_helo, 253),
                    receiving_ip=_clip(failure.receiving_ip, 64),
                    additional_information=_clip(failure.additional_information, 1000),
                    failure_reason_code=_clip(failure.failure_reason_code, 255),
                )
                for failure in result.failures
            )
    return new, old


# --- the sweep and retention ----------------------------------------------------------------


def raw_messages_due(*, now: datetime, limit: int = 500) -> list[int]:
    """Pending messages whose parse must be queued again: never claimed for QUEUE_GRACE (the
    task was lost), claimed longer ago than CLAIM_TIMEOUT, or claimed by a process of this
    host that is gone (a worker killed mid-parse whose broker message is not yet redelivered)."""
    pending = RawMessage.objects.filter(state=RawMessageState.PENDING).order_by("received_at")
    lost = Q(claimed_at__isnull=True, received_at__lt=now - QUEUE_GRACE)
    expired = Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    due = list(pending.filter(lost | expired).values_list("pk", flat=True)[:limit])
    held = pending.filter(claimed_at__gte=now - CLAIM_TIMEOUT).values_list("pk", "claimed_by")
    due.extend(pk for pk, claimer in held[:limit] if _claimer_gone(claimer))
    return due


def raw_messages_enqueue(message_ids: Iterable[int]) -> int:
    queued = 0
    for message_id in message_ids:
        _enqueue_parse(message_id)
        queued += 1
    return queued


DELETE_BATCH = 5000
REPORT_DELETE_BATCH = 200
RAW_DELETE_BATCH = 100


def _delete_batched(queryset: models.QuerySet[Any], size: int = DELETE_BATCH) -> int:
    """Delete the matching rows a batch at a time: short transactions, bounded locks."""
    deleted = 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:size])
        if not ids:
            return deleted
        count, _ = queryset.model.objects.filter(pk__in=ids).delete()
        deleted += count


def reports_prune(*, now: datetime) -> dict[str, int]:
    """Delete what is older than MAILSEC_REPORT_RETENTION_DAYS: reports whose period ended
    before the window (their records first, in batches), rollup rows of days before it, and
    raw messages received before it."""
    cutoff = now - timedelta(days=settings.MAILSEC_REPORT_RETENTION_DAYS)
    counts = {"records": 0, "reports": 0, "tls_reports": 0, "rollups": 0, "raw_messages": 0}
    while True:
        ids = list(
            Report.objects.filter(date_end__lt=cutoff)
            .order_by()
            .values_list("pk", flat=True)[:REPORT_DELETE_BATCH]
        )
        if not ids:
            break
        counts["records"] += _delete_batched(Record.objects.filter(report_id__in=ids))
        Report.objects.filter(pk__in=ids).delete()
        counts["reports"] += len(ids)
    counts["tls_reports"] = _delete_batched(
        TlsReport.objects.filter(date_end__lt=cutoff), REPORT_DELETE_BATCH
    )
    counts["rollups"] = _delete_batched(DailyRollup.objects.filter(day__lt=cutoff.date()))
    counts["rollups"] += _delete_batched(DailySelector.objects.filter(day__lt=cutoff.date()))
    while True:
        ids = list(
            RawMessage.objects.filter(received_at__lt=cutoff)
            .order_by()
            .values_list("pk", flat=True)[:RAW_DELETE_BATCH]
        )
        if not ids:
            break
        _raw_messages_delete(ids)
        counts["raw_messages"] += len(ids)
    return counts


def _raw_messages_delete(ids: list[int]) -> None:
    """Delete raw messages without loading their content; reports keep their rows."""
    with transaction.atomic():
        Report.objects.filter(raw_message_id__in=ids).update(raw_message=None)
        TlsReport.objects.filter(raw_message_id__in=ids).update(raw_message=None)
        RawMessage.objects.filter(pk__in=ids).only("pk").delete()


# --- the quarantine: what admins do ---------------------------------------------------------


def _require_write(actor: Actor, organisation: Organisation) -> None:
    if actor is None or not can_write(actor, organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


def _require_message_admin(actor: Actor, message: RawMessage) -> None:
    """An organisation's admins and owners act on its messages; a message of no organisation
    (SMTP or pipe ingest, domain unknown) is for superusers only, as the quarantine lists it."""
    if actor is None or not actor.is_authenticated:
        raise PermissionDenied("Sign in first.")
    if message.organisation is None:
        if not (isinstance(actor, User) and actor.is_superuser):
            raise PermissionDenied("Only superusers can act on messages of no organisation.")
        return
    _require_write(actor, message.organisation)


def _message_for_admin(raw_message_id: int) -> RawMessage:
    message = (
        RawMessage.objects.select_for_update(of=("self",))
        .defer("content")
        .select_related("organisation")
        .filter(pk=raw_message_id)
        .first()
    )
    if message is None:
        raise RawMessage.DoesNotExist(f"No raw message {raw_message_id}.")
    return message


@transaction.atomic
def raw_message_reprocess(*, raw_message_id: int, actor: Actor) -> RawMessage:
    """Put a quarantined message back to pending and queue its parse (after a parser fix).

    Audited. Its attempts start again from zero.
    """
    message = _message_for_admin(raw_message_id)
    _require_message_admin(actor, message)
    if message.state != RawMessageState.QUARANTINED:
        raise ValidationError("Only a quarantined message can be re-processed.")
    before = {"state": message.state, "reason": message.reason, "detail": message.detail[:500]}
    RawMessage.objects.filter(pk=message.pk).update(
        state=RawMessageState.PENDING,
        reason="",
        detail="",
        attempts=0,
        claimed_at=None,
        claimed_by="",
        processed_at=None,
    )
    audit_record(
        actor=actor,
        action="report.raw_message.reprocess",
        obj=message,
        organisation=message.organisation,
        before=before,
        after={"state": RawMessageState.PENDING},
    )
    message_id = message.pk
    transaction.on_commit(lambda: _enqueue_parse(message_id))
    message.refresh_from_db(fields=["state", "reason", "detail", "attempts"])
    return message


@transaction.atomic
def raw_message_delete(*, raw_message_id: int, actor: Actor) -> None:
    """Delete a received message (reports stored from it stay). Audited."""
    message = _message_for_admin(raw_message_id)
    _require_message_admin(actor, message)
    audit_record(
        actor=actor,
        action="report.raw_message.delete",
        obj=message,
        organisation=message.organisation,
        before={
            "state": message.state,
            "reason": message.reason,
            "filename": message.filename,
            "sha256": message.sha256,
            "size": message.size,
        },
    )
    _raw_messages_delete([message.pk])
