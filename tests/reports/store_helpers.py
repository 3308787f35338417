"""Parsed reports built by hand, for the storage tests: the parser's dataclasses, filled in.

`Document` satisfies `reports.parsed.AggregateDocument`: its records are streamed by a
generator, which can stop with a `Rejection` part-way or wait on an event (to hold a transaction
open while another thread stores the same report).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from reports.models import IngestSource, RawMessage, Report
from reports.parsed import (
    AggregateHeader,
    AggregateRecord,
    DkimAuth,
    PublishedPolicy,
    Rejection,
    SpfAuth,
)
from reports.services import ProcessOutcome, raw_message_process, raw_message_store

BEGIN = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
END = BEGIN + dt.timedelta(days=1) - dt.timedelta(seconds=1)


def header(
    domain: str = "example.com", *, org_name: str = "google.com", report_id: str = "r-1"
) -> AggregateHeader:
    return AggregateHeader(
        org_name=org_name,
        email=f"noreply-dmarc-support@{org_name}",
        report_id=report_id,
        date_begin=BEGIN,
        date_end=END,
        policy=PublishedPolicy(domain=domain, p="none", adkim="r", aspf="r", pct=100),
    )


def record(
    ip: str,
    count: int,
    *,
    dkim: str = "pass",
    spf: str = "pass",
    header_from: str = "example.com",
    selector: str = "s1",
) -> AggregateRecord:
    return AggregateRecord(
        source_ip=ip,
        count=count,
        disposition="none" if "pass" in (dkim, spf) else "quarantine",
        dkim_aligned=dkim,
        spf_aligned=spf,
        header_from=header_from,
        dkim=(DkimAuth(header_from, selector, dkim),),
        spf=(SpfAuth(header_from, "mfrom", spf),),
    )


@dataclass
class Document:
    header: AggregateHeader
    rows: list[AggregateRecord]
    fail_after: int | None = None  # raise a Rejection after this many records
    hold_after: int | None = None  # wait for `release` after this many records
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def records(self) -> Iterator[AggregateRecord]:
        for index, row in enumerate(self.rows):
            if index == self.fail_after:
                raise Rejection("malformed_xml", "unexpected end of document")
            if index == self.hold_after:
                self.holding.set()
                assert self.release.wait(30), "never released"
            yield row


def document(
    domain: str = "example.com", rows: list[AggregateRecord] | None = None, **kw
) -> Document:
    header_kw = {k: kw.pop(k) for k in ("org_name", "report_id") if k in kw}
    return Document(header(domain, **header_kw), rows if rows is not None else [], **kw)


def mixed_rows() -> list[AggregateRecord]:
    """Five records, two of them the same key (so a rollup row sums them)."""
    return [
        record("192.0.2.1", 10),
        record("192.0.2.1", 5),
        record("192.0.2.2", 7, spf="fail"),
        record("198.51.100.9", 3, dkim="fail", spf="fail"),
        record("2001:db8::1", 1, dkim="fail"),
    ]


def stored_message(content: bytes = b"placeholder", organisation=None) -> RawMessage:
    return raw_message_store(
        content,
        source=IngestSource.COMMAND,
        organisation_id=organisation.pk if organisation else None,
        parse=False,
    )


def only_report(outcome: ProcessOutcome) -> Report:
    """The one DMARC report of an outcome."""
    (report,) = outcome.reports
    assert isinstance(report, Report)
    return report


def process(raw_message_id: int) -> ProcessOutcome:
    """Process a message that must be claimable."""
    outcome = raw_message_process(raw_message_id=raw_message_id)
    assert outcome is not None
    return outcome
