"""What the report parsers produce: plain dataclasses, no Django, no I/O.

The contract between the pure parsers (`reports.parse` and the modules it uses) and the storage
services. A DMARC aggregate report is a header (known before the first record) and a stream of
records, so a report of a million records is never held in memory at once; a TLS report
(RFC 8460) is small and parsed whole.

Result words are normalised to lower case; absent optional fields are "" (strings) or None.
Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class ReportKind(StrEnum):
    DMARC = "dmarc"
    TLSRPT = "tlsrpt"


class Rejection(Exception):
    """A message that is not a report mailsec can store, with a stable reason code.

    `reason` is one of `REJECTION_REASONS`' keys; `detail` says what exactly was seen (shown to
    admins in the quarantine, never parsed).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# Every reason a message can be quarantined for, with the sentence admins read.
REJECTION_REASONS: dict[str, str] = {
    "empty": "The message or file is empty",
    "not_a_report": "No DMARC aggregate or TLS report was found in the message",
    "failure_report": "A DMARC failure (forensic) report, not an aggregate report",
    "bounce": "A delivery status notification (bounce), not a report",
    "malformed_mime": "The message's MIME structure could not be read",
    "too_large": "The report is larger than the size limit once decompressed",
    "compression_ratio": "The report decompresses far beyond any real report (a compression bomb)",
    "too_many_members": "The archive holds more files than a report ever does",
    "nested_archive": "The archive holds another archive",
    "corrupt_archive": "The archive or compressed stream is truncated or corrupt",
    "forbidden_dtd": "The XML declares a DTD or entities, which reports never do",
    "malformed_xml": "The XML is not well-formed",
    "not_aggregate_xml": "The XML is not a DMARC aggregate report",
    "missing_field": "A field every aggregate report must carry is missing or invalid",
    "malformed_json": "The JSON is not a valid SMTP TLS report",
    "too_many_records": "The report has more records than the limit",
}


@dataclass(frozen=True, slots=True)
class DkimAuth:
    domain: str
    selector: str
    result: str  # none|pass|fail|policy|neutral|temperror|permerror
    human_result: str = ""


@dataclass(frozen=True, slots=True)
class SpfAuth:
    domain: str
    scope: str  # helo|mfrom ("" when the reporter omits it)
    result: str  # none|neutral|pass|fail|softfail|temperror|permerror


@dataclass(frozen=True, slots=True)
class PolicyOverride:
    type: str  # forwarded|sampled_out|trusted_forwarder|mailing_list|local_policy|other
    comment: str = ""


@dataclass(frozen=True, slots=True)
class AggregateRecord:
    source_ip: str  # normalised (ipaddress' compressed form)
    count: int
    disposition: str  # none|quarantine|reject (RFC 9990 adds pass)
    dkim_aligned: str  # policy_evaluated/dkim: pass|fail
    spf_aligned: str  # policy_evaluated/spf: pass|fail
    header_from: str
    envelope_from: str = ""
    envelope_to: str = ""
    reasons: tuple[PolicyOverride, ...] = ()
    dkim: tuple[DkimAuth, ...] = ()
    spf: tuple[SpfAuth, ...] = ()

    @property
    def dmarc_pass(self) -> bool:
        """Aligned and passing by DKIM or SPF: what DMARC counts as a pass."""
        return self.dkim_aligned == "pass" or self.spf_aligned == "pass"


@dataclass(frozen=True, slots=True)
class PublishedPolicy:
    domain: str
    p: str = ""
    sp: str = ""
    np: str = ""  # RFC 9990
    pct: int | None = None  # gone in RFC 9990
    adkim: str = ""  # r|s
    aspf: str = ""
    fo: str = ""
    testing: str = ""  # RFC 9990: y|n
    discovery_method: str = ""  # RFC 9990: psl|treewalk


@dataclass(frozen=True, slots=True)
class AggregateHeader:
    """Everything about an aggregate report except its records."""

    org_name: str  # the reporter; derived from the e-mail domain when the report leaves it empty
    email: str
    report_id: str
    date_begin: datetime
    date_end: datetime
    policy: PublishedPolicy
    schema: str = "rfc7489"  # rfc7489|draft|rfc9990
    extra_contact_info: str = ""
    generator: str = ""
    errors: tuple[str, ...] = ()


class AggregateDocument(Protocol):
    """A parsed aggregate report: its header, then its records streamed once.

    `records()` may raise `Rejection` part-way (a report cut off after some records): the
    caller stores nothing of such a report.
    """

    @property
    def header(self) -> AggregateHeader: ...

    def records(self) -> Iterator[AggregateRecord]: ...


@dataclass(frozen=True, slots=True)
class TlsFailureDetail:
    result_type: str  # starttls-not-supported, certificate-expired, sts-policy-fetch-error, ...
    failed_session_count: int
    sending_mta_ip: str = ""
    receiving_mx_hostname: str = ""
    receiving_mx_helo: str = ""
    receiving_ip: str = ""
    additional_information: str = ""
    failure_reason_code: str = ""


@dataclass(frozen=True, slots=True)
class TlsPolicyResult:
    policy_type: str  # sts|tlsa|no-policy-found
    policy_domain: str
    policy_strings: tuple[str, ...] = ()
    mx_hosts: tuple[str, ...] = ()
    successful_sessions: int = 0
    failed_sessions: int = 0
    failures: tuple[TlsFailureDetail, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsReport:
    org_name: str
    report_id: str
    contact_info: str
    date_begin: datetime
    date_end: datetime
    policies: tuple[TlsPolicyResult, ...] = field(default_factory=tuple)

    @property
    def policy_domain(self) -> str:
        """The domain reported on (every policy of a report is for one recipient domain)."""
        return self.policies[0].policy_domain if self.policies else ""

    @property
    def successful_sessions(self) -> int:
        return sum(policy.successful_sessions for policy in self.policies)

    @property
    def failed_sessions(self) -> int:
        return sum(policy.failed_sessions for policy in self.policies)
