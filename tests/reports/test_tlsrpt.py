"""SMTP TLS reports (RFC 8460): bare JSON, gzip, and e-mail; strict types; parsedmarc agrees."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from reports.extract import Limits
from reports.parse import DEFAULT_LIMITS, parse_message
from reports.parsed import Rejection, TlsReport
from reports.tlsrpt import parse_tlsrpt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reports" / "tlsrpt"
RFC_EXAMPLE = FIXTURES / "rfc8460-example.json"


def _tls(raw: bytes) -> TlsReport:
    report = parse_message(raw)
    assert isinstance(report, TlsReport)
    return report


def _rejection(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Rejection:
    with pytest.raises(Rejection) as caught:
        parse_message(raw, limits=limits)
    return caught.value


def test_rfc_example_is_read_whole() -> None:
    report = _tls(RFC_EXAMPLE.read_bytes())
    assert report.org_name == "Company-X"
    assert report.report_id == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
    assert report.contact_info == "sts-reporting@company-x.example"
    assert report.date_begin == datetime(2016, 4, 1, tzinfo=UTC)
    assert report.date_end == datetime(2016, 4, 1, 23, 59, 59, tzinfo=UTC)
    assert report.policy_domain == "company-y.example"
    assert (report.successful_sessions, report.failed_sessions) == (5326, 303)
    (policy,) = report.policies
    assert policy.policy_type == "sts"
    assert policy.policy_strings[1] == "mode: testing"
    assert policy.mx_hosts == ("*.mail.company-y.example",)
    expired, starttls, validation = policy.failures
    assert (expired.result_type, expired.failed_session_count) == ("certificate-expired", 100)
    assert expired.sending_mta_ip == "2001:db8:abcd:12::1"  # normalised
    assert starttls.receiving_ip == "203.0.113.56"
    assert starttls.additional_information.endswith("#StarttlsNotSupported")
    assert validation.failure_reason_code == "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    assert validation.receiving_mx_hostname == "mx-backup.mail.company-y.example"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json*")))
def test_every_fixture_parses_bare_and_gzipped_as_parsedmarc_reads_it(name: str) -> None:
    path = FIXTURES / name
    report = _tls(path.read_bytes())
    plain = path.read_bytes() if name.endswith(".json") else gzip.decompress(path.read_bytes())
    document = json.loads(plain)
    assert report.report_id == document["report-id"]
    assert len(report.policies) == len(document["policies"])

    import parsedmarc  # type: ignore[import-untyped]

    theirs: dict[str, Any] = parsedmarc.parse_report_file(str(path), offline=True)
    assert theirs["report_type"] == "smtp_tls"
    their = theirs["report"]
    assert report.org_name == their["organization_name"]
    assert report.report_id == their["report_id"]
    their_policies = their["policies"]
    assert [p.policy_domain for p in report.policies] == [
        p["policy_domain"] for p in their_policies
    ]
    assert [p.successful_sessions for p in report.policies] == [
        p["successful_session_count"] for p in their_policies
    ]
    assert [p.failed_sessions for p in report.policies] == [
        p["failed_session_count"] for p in their_policies
    ]
    assert [len(p.failures) for p in report.policies] == [
        len(p.get("failure_details", [])) for p in their_policies
    ]


def test_offsets_become_utc_and_lone_strings_become_lists() -> None:
    report = _tls((FIXTURES / "no-policy-found.json").read_bytes())
    assert report.date_begin == datetime(2024, 3, 4, 23, 0, tzinfo=UTC)
    no_policy, tlsa = report.policies
    assert no_policy.policy_type == "no-policy-found"
    assert no_policy.mx_hosts == ("mx.example.org",)
    assert no_policy.failures[0].receiving_mx_hostname == "mx.example.org"
    assert no_policy.failures[0].receiving_mx_helo == "mx.example.org"
    assert tlsa.policy_type == "tlsa" and tlsa.policy_strings == ("3 1 1 0123456789abcdef",)
    assert (report.successful_sessions, report.failed_sessions) == (17, 2)


def _email(attachment: bytes, *, subtype: str, filename: str) -> bytes:
    message = EmailMessage()
    message["From"] = "tls-reporting@company-x.example"
    message["To"] = "tlsrpt@company-y.example"
    message["Subject"] = "Report Domain: company-y.example Submitter: company-x.example"
    message["TLS-Report-Domain"] = "company-y.example"
    message["TLS-Report-Submitter"] = "company-x.example"
    message.set_content("This is an aggregate TLS report from company-x.example")
    message.add_attachment(attachment, maintype="application", subtype=subtype, filename=filename)
    message.replace_header("Content-Type", 'multipart/report; report-type="tlsrpt"')
    return message.as_bytes()


def test_tlsrpt_gzip_attachment_of_a_multipart_report_is_read() -> None:
    raw = _email(
        gzip.compress(RFC_EXAMPLE.read_bytes()), subtype="tlsrpt+gzip", filename="r.json.gz"
    )
    assert b"report-type" in raw
    assert _tls(raw).report_id == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"


def test_tlsrpt_json_attachment_is_read() -> None:
    raw = _email(RFC_EXAMPLE.read_bytes(), subtype="tlsrpt+json", filename="r.json")
    assert _tls(raw).failed_sessions == 303


def _mutated(change: Any) -> bytes:
    document = json.loads(RFC_EXAMPLE.read_bytes())
    change(document)
    return json.dumps(document).encode()


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    return document["policies"][0]["summary"]  # type: ignore[no-any-return]


def _detail(document: dict[str, Any]) -> dict[str, Any]:
    return document["policies"][0]["failure-details"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: _summary(d).update({"total-successful-session-count": True}), "successful"),
        (lambda d: _summary(d).update({"total-failure-session-count": -1}), "failure-session"),
        (lambda d: _summary(d).update({"total-failure-session-count": 1.5}), "failure-session"),
        (lambda d: _summary(d).update({"total-failure-session-count": "3"}), "failure-session"),
        (lambda d: _summary(d).update({"total-failure-session-count": 10**20}), "out of range"),
        (lambda d: _summary(d).pop("total-successful-session-count"), "is missing"),
        (lambda d: _detail(d).update({"failed-session-count": False}), "failed-session-count"),
        (lambda d: _detail(d).update({"sending-mta-ip": "not-an-ip"}), "sending-mta-ip"),
        (lambda d: _detail(d).update({"result-type": 7}), "result-type"),
        (lambda d: d["policies"][0]["policy"].update({"policy-type": "dane"}), "policy-type"),
        (lambda d: d["policies"][0]["policy"].update({"policy-string": [1]}), "policy-string"),
        (lambda d: d["policies"][0]["policy"].pop("policy-domain"), "policy-domain"),
        (lambda d: d["policies"][0].update({"failure-details": {}}), "failure-details"),
        (lambda d: d["policies"][0].pop("summary"), "summary"),
        (lambda d: d.update({"policies": {}}), "policies"),
        (lambda d: d.update({"report-id": 5}), "report-id"),
        (lambda d: d.update({"organization-name": ""}), "organization-name"),
        (lambda d: d["date-range"].update({"start-datetime": "yesterday"}), "start-datetime"),
        (lambda d: d["date-range"].update({"start-datetime": "2016-04-01T00:00:00"}), "zone"),
        (lambda d: d["date-range"].update({"start-datetime": "2016-04-02T00:00:00Z"}), "after"),
        (lambda d: d.pop("date-range"), "date-range"),
    ],
)
def test_types_are_checked_strictly(change: Any, where: str) -> None:
    rejection = _rejection(_mutated(change))
    assert rejection.reason == "malformed_json"
    assert where in rejection.detail, rejection.detail


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"a": NaN}',
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"report-id": "x", "policies": []}\xff',
        b'{"report-id": "r", "policies": [], "date-range": []}',
        b'{"just": "json"}',
        b'{"n": ' + b"9" * 5000 + b"}",
    ],
)
def test_broken_or_foreign_json_is_malformed(raw: bytes) -> None:
    assert parse_message_reason(raw) == "malformed_json"


def parse_message_reason(raw: bytes) -> str:
    try:
        parse_message(raw)
    except Rejection as rejection:
        return rejection.reason
    return "accepted"


def test_a_json_array_is_not_a_report() -> None:
    assert parse_message_reason(b"[1, 2, 3]") == "not_a_report"


def test_json_over_the_size_cap_is_too_large() -> None:
    document = json.loads(RFC_EXAMPLE.read_bytes())
    document["padding"] = "x" * 20_000
    raw = gzip.compress(json.dumps(document).encode())
    assert _rejection(raw, Limits(max_json_bytes=10_000)).reason == "too_large"
    assert isinstance(parse_message(raw), TlsReport)


def test_unknown_members_are_ignored() -> None:
    report = parse_tlsrpt(_mutated(lambda d: d.update({"x-vendor-extension": {"a": [1]}})))
    assert report.org_name == "Company-X"
