"""Reports are found in every MIME shape receivers send, by content; non-reports are named.

The messages are built here in the shapes seen in the wild (the real samples in
test_parse_samples.py cover Google's zip, Mimecast's gzip body and Amazon SES's
octet-stream): the declared type never decides, the bytes do.
"""

from __future__ import annotations

import base64
import gzip
import io
import quopri
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from reports.parse import parse_message
from reports.parsed import Rejection, TlsReport

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "reports" / "samples"
NICE = SAMPLES / "parsedmarc" / "samples" / "extract_report" / "nice-input.xml"
REPORT = NICE.read_bytes()
REPORT_ID = "11038226378739404135"


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def _message(subject: str = "Report domain: example.com Submitter: google.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "noreply-dmarc-support@google.com"
    message["To"] = "dmarc@example.com"
    message["Subject"] = subject
    return message


def _report_id(raw: bytes) -> str:
    document = parse_message(raw)
    assert not isinstance(document, TlsReport)
    assert sum(1 for _ in document.records()) == 20
    return document.header.report_id


def _reason(raw: bytes) -> str:
    with pytest.raises(Rejection) as caught:
        parse_message(raw)
    return caught.value.reason


@pytest.mark.parametrize(
    ("maintype", "subtype", "payload"),
    [
        ("application", "zip", _zip("google.com!example.com!1718236800!1718323199.xml", REPORT)),
        ("application", "gzip", gzip.compress(REPORT)),
        ("application", "x-gzip", gzip.compress(REPORT)),
        ("application", "octet-stream", gzip.compress(REPORT)),
        ("application", "octet-stream", _zip("r.xml", REPORT)),
        ("application", "octet-stream", REPORT),
        ("application", "xml", REPORT),
        ("text", "plain", gzip.compress(REPORT)),  # mislabelled
    ],
)
def test_attachment_is_found_whatever_its_declared_type(
    maintype: str, subtype: str, payload: bytes
) -> None:
    message = _message()
    message.set_content("This is an aggregate report from google.com.")
    message.add_attachment(payload, maintype=maintype, subtype=subtype, filename="report")
    assert _report_id(message.as_bytes()) == REPORT_ID


def test_attachment_listed_before_the_text_part() -> None:
    message = _message()
    message.make_mixed()
    attachment = EmailMessage()
    attachment.set_content(
        _zip("r.xml", REPORT), maintype="application", subtype="zip", filename="r.zip"
    )
    text = EmailMessage()
    text.set_content("This is an aggregate report.")
    message.attach(attachment)
    message.attach(text)
    assert _report_id(message.as_bytes()) == REPORT_ID


def test_single_part_body_that_is_itself_gzip() -> None:
    encoded = base64.encodebytes(gzip.compress(REPORT)).decode()
    raw = (
        "From: dmarc-report@mimecast.example\r\n"
        "Subject: Report domain: example.com\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: application/gzip; name="report.xml.gz"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + encoded.replace("\n", "\r\n") + "\r\n"
    ).encode()
    assert _report_id(raw) == REPORT_ID


def test_plain_xml_body() -> None:
    raw = (
        b"From: dmarc@reporter.example\r\nSubject: DMARC report\r\nContent-Type: text/xml\r\n\r\n"
        + REPORT
    )
    assert _report_id(raw) == REPORT_ID


def test_quoted_printable_xml_body() -> None:
    raw = (
        b"From: dmarc@reporter.example\r\nSubject: DMARC report\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + quopri.encodestring(REPORT.replace(b"\n", b"\r\n"))
    )
    assert _report_id(raw) == REPORT_ID


def test_report_forwarded_as_an_attached_message() -> None:
    inner = _message()
    inner.set_content("Report attached.")
    inner.add_attachment(
        gzip.compress(REPORT), maintype="application", subtype="gzip", filename="r.gz"
    )
    outer = _message("Fwd: Report domain: example.com")
    outer.set_content("See the forwarded report.")
    outer.add_attachment(inner)
    assert _report_id(outer.as_bytes()) == REPORT_ID


def test_html_covering_note_with_a_doctype_does_not_hide_the_report() -> None:
    message = _message()
    message.set_content("Report attached.")
    message.add_alternative(
        "<!DOCTYPE html><html><body><p>Report attached.</p></body></html>", subtype="html"
    )
    message.add_attachment(
        _zip("r.xml", REPORT), maintype="application", subtype="zip", filename="r.zip"
    )
    assert _report_id(message.as_bytes()) == REPORT_ID


def test_empty_org_name_and_email_take_the_sender_domain() -> None:
    text = REPORT.decode().replace("<org_name>google.com</org_name>", "<org_name></org_name>")
    text = text.replace("<email>noreply-dmarc-support@google.com</email>", "")
    message = _message()
    message.replace_header("From", "DMARC <dmarc@Reports.Example.NET>")
    message.set_content("report")
    message.add_attachment(gzip.compress(text.encode()), maintype="application", subtype="gzip")
    document = parse_message(message.as_bytes())
    assert not isinstance(document, TlsReport)
    assert document.header.org_name == "reports.example.net"


def test_failure_report_is_named() -> None:
    message = _message("DMARC failure report")
    message.set_content("A message failed DMARC.")
    message.add_attachment(
        b"Feedback-Type: auth-failure\r\nAuth-Failure: dmarc\r\n",
        maintype="message",
        subtype="feedback-report",
    )
    assert _reason(message.as_bytes()) == "failure_report"


def test_bounce_is_named_even_when_it_quotes_a_report() -> None:
    original = _message()
    original.set_content("report")
    original.add_attachment(
        _zip("r.xml", REPORT), maintype="application", subtype="zip", filename="r.zip"
    )
    raw = (
        b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; dmarc@example.com\r\n"
        b"Action: failed\r\nStatus: 5.1.1\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + original.as_bytes() + b"\r\n--b--\r\n"
    )
    assert _reason(raw) == "bounce"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"From: spam@spam.example\r\nSubject: Cheap\r\n\r\nBuy now!\r\n", "not_a_report"),
        (
            b"From: a@b.example\r\nContent-Type: text/xml\r\n\r\n<html><p>hi</p></html>",
            "not_aggregate_xml",
        ),
        (
            b"From: a@b.example\r\nContent-Type: application/gzip\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n",
            "not_a_report",
        ),
        (b"just some words, not mail\n", "not_a_report"),
    ],
)
def test_mail_without_a_report_is_named(raw: bytes, reason: str) -> None:
    assert _reason(raw) == reason


def test_hostile_part_refuses_the_message_even_beside_a_good_report() -> None:
    message = _message()
    message.set_content("two attachments")
    message.add_attachment(
        _zip("inner.zip", _zip("r.xml", REPORT)), maintype="application", subtype="zip"
    )
    message.add_attachment(gzip.compress(REPORT), maintype="application", subtype="gzip")
    assert _reason(message.as_bytes()) == "nested_archive"
