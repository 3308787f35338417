"""SMTP TLS reports (RFC 8460): JSON in, a `TlsReport` out, every field's type checked.

A TLS report is small, so it is read whole, but never beyond `Limits.max_json_bytes`
(`too_large`). Anything that is not the RFC's shape is `malformed_json` with the path of the
offending field: a count that is a boolean, a float, a string or negative; a date that is not
an RFC 3339 date-time; a missing required member. Unknown members are ignored, as the RFC
asks of receivers.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from reports.extract import CHUNK, Reader
from reports.parsed import Rejection, TlsFailureDetail, TlsPolicyResult, TlsReport

# Sessions counted in one report beyond this are no real sender's.
MAX_SESSIONS = 10**12
MAX_POLICIES = 10_000
MAX_FAILURE_DETAILS = 100_000
MAX_STRING = 10_000
POLICY_TYPES = ("sts", "tlsa", "no-policy-found")


def _bad(path: str, problem: str) -> Rejection:
    return Rejection("malformed_json", f"{path}: {problem}")


def read_limited(stream: Reader, max_bytes: int) -> bytes:
    """The whole stream, refused (`too_large`) as soon as it passes `max_bytes`."""
    chunks: list[bytes] = []
    total = 0
    while data := stream.read(CHUNK):
        total += len(data)
        if total > max_bytes:
            raise Rejection("too_large", f"the JSON report is over {max_bytes} bytes")
        chunks.append(data)
    return b"".join(chunks)


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(path, "must be an object")
    return value


def _string(parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> str:
    value = parent.get(key)
    if value is None:
        if required:
            raise _bad(f"{path}.{key}", "is missing")
        return ""
    if not isinstance(value, str):
        raise _bad(f"{path}.{key}", "must be a string")
    if len(value) > MAX_STRING:
        raise _bad(f"{path}.{key}", f"is longer than {MAX_STRING} characters")
    return value.strip()


def _strings(parent: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    """A list of strings; a lone string is taken as a list of one (seen from some senders)."""
    value = parent.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad(f"{path}.{key}", "must be a list of strings")
    if len(value) > MAX_POLICIES or any(len(item) > MAX_STRING for item in value):
        raise _bad(f"{path}.{key}", "is too long")
    return tuple(item.strip() for item in value)


def _count(parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> int:
    value = parent.get(key)
    if value is None:
        if required:
            raise _bad(f"{path}.{key}", "is missing")
        return 0
    # bool is a subclass of int in Python, and true is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{path}.{key}", f"must be a whole number, not {json.dumps(value)[:40]}")
    if value < 0:
        raise _bad(f"{path}.{key}", f"must not be negative ({value})")
    if value > MAX_SESSIONS:
        raise _bad(f"{path}.{key}", f"is out of range ({value})")
    return value


def _datetime(parent: dict[str, Any], key: str, path: str) -> datetime:
    text = _string(parent, key, path)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(f"{path}.{key}", f"is not an RFC 3339 date-time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise _bad(f"{path}.{key}", f"has no time zone: {text[:40]!r}")
    return moment.astimezone(UTC)


def _ip(parent: dict[str, Any], key: str, path: str) -> str:
    text = _string(parent, key, path, required=False)
    if not text:
        return ""
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise _bad(f"{path}.{key}", f"is not an IP address: {text[:60]!r}") from None


def _failure(value: Any, path: str) -> TlsFailureDetail:
    detail = _object(value, path)
    return TlsFailureDetail(
        result_type=_string(detail, "result-type", path).lower(),
        failed_session_count=_count(detail, "failed-session-count", path),
        sending_mta_ip=_ip(detail, "sending-mta-ip", path),
        receiving_mx_hostname=_string(detail, "receiving-mx-hostname", path, required=False)
        .rstrip(".")
        .lower(),
        receiving_mx_helo=_string(detail, "receiving-mx-helo", path, required=False),
        receiving_ip=_ip(detail, "receiving-ip", path),
        additional_information=_string(detail, "additional-information", path, required=False),
        failure_reason_code=_string(detail, "failure-reason-code", path, required=False),
    )


def _policy(value: Any, path: str) -> TlsPolicyResult:
    entry = _object(value, path)
    policy = _object(entry.get("policy"), f"{path}.policy")
    policy_type = _string(policy, "policy-type", f"{path}.policy").lower()
    if policy_type not in POLICY_TYPES:
        raise _bad(f"{path}.policy.policy-type", f"unknown policy type {policy_type[:40]!r}")
    domain = _string(policy, "policy-domain", f"{path}.policy").rstrip(".").lower()
    if not domain:
        raise _bad(f"{path}.policy.policy-domain", "is empty")
    summary = _object(entry.get("summary"), f"{path}.summary")
    failures_value = entry.get("failure-details", [])
    if not isinstance(failures_value, list):
        raise _bad(f"{path}.failure-details", "must be a list")
    if len(failures_value) > MAX_FAILURE_DETAILS:
        raise _bad(f"{path}.failure-details", f"has more than {MAX_FAILURE_DETAILS} entries")
    return TlsPolicyResult(
        policy_type=policy_type,
        policy_domain=domain,
        policy_strings=_strings(policy, "policy-string", f"{path}.policy"),
        mx_hosts=_strings(policy, "mx-host", f"{path}.policy"),
        successful_sessions=_count(summary, "total-successful-session-count", f"{path}.summary"),
        failed_sessions=_count(summary, "total-failure-session-count", f"{path}.summary"),
        failures=tuple(
            _failure(item, f"{path}.failure-details[{index}]")
            for index, item in enumerate(failures_value)
        ),
    )


def _reject_constant(name: str) -> Any:
    raise Rejection("malformed_json", f"{name} is not JSON")


def parse_tlsrpt(data: bytes) -> TlsReport:
    """An RFC 8460 report from its JSON bytes (UTF-8, a BOM tolerated). Raises `Rejection`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Rejection("malformed_json", f"not UTF-8: {error}") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except Rejection:
        raise
    except RecursionError:
        raise Rejection("malformed_json", "nested too deeply") from None
    except ValueError as error:
        raise Rejection("malformed_json", str(error)[:200]) from None
    report = _object(document, "$")
    if "policies" not in report or "report-id" not in report:
        raise Rejection("malformed_json", "not an SMTP TLS report (no report-id or policies)")
    date_range = _object(report.get("date-range"), "$.date-range")
    begin = _datetime(date_range, "start-datetime", "$.date-range")
    end = _datetime(date_range, "end-datetime", "$.date-range")
    if begin > end:
        raise _bad("$.date-range", "starts after it ends")
    policies = report["policies"]
    if not isinstance(policies, list):
        raise _bad("$.policies", "must be a list")
    if len(policies) > MAX_POLICIES:
        raise _bad("$.policies", f"has more than {MAX_POLICIES} entries")
    report_id = _string(report, "report-id", "$")
    if not report_id:
        raise _bad("$.report-id", "is empty")
    org_name = _string(report, "organization-name", "$")
    if not org_name:
        raise _bad("$.organization-name", "is empty")
    return TlsReport(
        org_name=org_name,
        report_id=report_id,
        contact_info=_string(report, "contact-info", "$", required=False),
        date_begin=begin,
        date_end=end,
        policies=tuple(
            _policy(item, f"$.policies[{index}]") for index, item in enumerate(policies)
        ),
    )
