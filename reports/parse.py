"""The one entry point of the report parser: bytes in (a whole e-mail or a bare file), a report out.

`parse_message` finds the report by content, never by the declared type: receivers label the
same gzip `application/gzip`, `application/x-gzip`, `application/octet-stream` or nothing at
all, put it before or after the text part, or make the whole body the gzip (Mimecast). Every
leaf MIME part (transfer encoding undone) and a bare file are sniffed alike: gzip (1f 8b), zip
(PK 03 04), XML ('<' after an optional BOM and blanks) or JSON ('{').

Mail that is not a report is told apart from "nothing found": a DMARC failure report
(`multipart/report; report-type=feedback-report`, or a `message/feedback-report` part) is
`failure_report`, a delivery status notification is `bounce`.

Hostile content (a bomb, a nested archive, a DTD) is refused at once with its own reason,
even when another part of the message would have parsed: such a message is quarantined, not
half-read.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re

from reports.aggregate_xml import parse_aggregate
from reports.extract import (
    Kind,
    Limits,
    Payload,
    is_blank,
    payloads,
)
from reports.parsed import AggregateDocument, Rejection, TlsReport
from reports.tlsrpt import parse_tlsrpt, read_limited

__all__ = ["DEFAULT_LIMITS", "Limits", "parse_message"]

# A header line ("Name: value") or an mbox "From " line starts every e-mail.
_HEADER_LINE = re.compile(rb"^(?:From |[!-9;-~]+:)")
# Rejections that say the content is hostile: the message is refused even if another part is fine.
_HOSTILE = frozenset(
    {
        "too_large",
        "compression_ratio",
        "too_many_members",
        "nested_archive",
        "corrupt_archive",
        "forbidden_dtd",
        "too_many_records",
    }
)
DEFAULT_LIMITS = Limits()
# Parts at most this many, so a message of ten thousand tiny parts is not walked forever.
MAX_PARTS = 200


def parse_message(raw: bytes, *, limits: Limits = DEFAULT_LIMITS) -> AggregateDocument | TlsReport:
    """The report in `raw`, an e-mail or a bare report file; raises `Rejection` otherwise."""
    if is_blank(raw):
        raise Rejection("empty", "zero bytes" if not raw else "only blanks")
    found = payloads(raw, limits=limits)
    if found:
        return _first_report(found, limits=limits, fallback_org="")
    if not _HEADER_LINE.match(raw):
        raise Rejection("not_a_report", "neither an e-mail nor a report file")
    return _parse_email(raw, limits=limits)


def _parse_email(raw: bytes, *, limits: Limits) -> AggregateDocument | TlsReport:
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as error:  # the e-mail package on hostile input
        raise Rejection("malformed_mime", str(error)[:200]) from None
    parts = _leaf_parts(message)
    _refuse_non_reports(message, parts)
    fallback_org = _sender_domain(message)
    found: list[Payload] = []
    for part in parts:
        if part.get_content_type() == "text/html":
            continue  # a report's covering note; an HTML DOCTYPE is not a hostile DTD
        body = _decoded(part)
        if not body:
            continue
        name = part.get_filename() or ""
        found.extend(payloads(body, limits=limits, name=str(name)))
    if not found:
        raise Rejection("not_a_report", "no part holds XML, JSON, gzip or zip")
    return _first_report(found, limits=limits, fallback_org=fallback_org)


def _decoded(part: email.message.Message) -> bytes:
    """A part's body with its transfer encoding undone; b"" when that encoding is broken."""
    try:
        body = part.get_payload(decode=True)
    except Exception:  # the e-mail package on hostile input: the part holds no report
        return b""
    return body if isinstance(body, bytes) else b""


def _leaf_parts(message: email.message.Message) -> list[email.message.Message]:
    parts: list[email.message.Message] = []
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            raise Rejection("malformed_mime", f"more than {MAX_PARTS} MIME parts")
        if not part.is_multipart():
            parts.append(part)
    return parts


def _refuse_non_reports(message: email.message.Message, parts: list[email.message.Message]) -> None:
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "multipart/report":
            report_type = str(part.get_param("report-type", "") or "").lower()
            if report_type == "feedback-report":
                raise Rejection("failure_report", "multipart/report; report-type=feedback-report")
            if report_type == "delivery-status":
                raise Rejection("bounce", "multipart/report; report-type=delivery-status")
        if content_type == "message/feedback-report":
            raise Rejection("failure_report", "a message/feedback-report part")
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            raise Rejection("bounce", f"a {content_type} part")


def _sender_domain(message: email.message.Message) -> str:
    sender = str(message.get("From", "") or "")
    match = re.search(r"@([A-Za-z0-9.-]+)", sender)
    return match.group(1).rstrip(".").lower() if match else ""


def _first_report(
    found: list[Payload], *, limits: Limits, fallback_org: str
) -> AggregateDocument | TlsReport:
    """The first payload that parses; hostile ones refuse the message at once."""
    first: Rejection | None = None
    for payload in found:
        try:
            return _parse_payload(payload, limits=limits, fallback_org=fallback_org)
        except Rejection as rejection:
            if rejection.reason in _HOSTILE:
                raise
            first = first or rejection
    assert first is not None  # found is never empty here
    raise first


def _parse_payload(
    payload: Payload, *, limits: Limits, fallback_org: str
) -> AggregateDocument | TlsReport:
    if payload.kind == Kind.XML:
        return parse_aggregate(
            payload.open, max_records=limits.max_records, fallback_org=fallback_org
        )
    stream = payload.open()
    try:
        data = read_limited(stream, limits.max_json_bytes)
    finally:
        stream.close()
    return parse_tlsrpt(data)
