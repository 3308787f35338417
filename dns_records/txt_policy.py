"""The shape shared by the policy records published in TXT (MTA-STS, TLS-RPT, BIMI). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dns_records.lookups import Lookup
from dns_records.results import CheckOutcome
from dns_records.status import CheckStatus


@dataclass(frozen=True)
class PolicyRecord:
    """The one record found, with its tags; `details` already names the record."""

    text: str
    tags: dict[str, str]
    details: dict[str, Any]


def parse_tags(text: str, *, lower_keys: bool = False) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip().lower() if lower_keys else key.strip()] = value.strip()
    return tags


def one_policy_record(
    check: str,
    txt: Lookup,
    *,
    record_name: str,
    version: str,
    label: str,
    absent: tuple[CheckStatus, str],
    suggestion: str | None = None,
    hint: str = "",
    lower_keys: bool = False,
) -> PolicyRecord | CheckOutcome:
    """The single `version`-tagged record at `record_name`, or the verdict when there is not one.

    A failed lookup is `error`; no record gets the `absent` verdict (with the record to publish,
    when there is a suggestion); several records are a fail, since receivers then ignore them all.
    """
    details: dict[str, Any] = {"record_name": record_name}
    if txt.failed:
        return CheckOutcome(
            check, CheckStatus.ERROR, f"Could not look up {record_name}: {txt.reason}", details
        )
    records = [r for r in txt.records if r.split(";", 1)[0].strip() == version] if txt.ok else []
    if not records:
        if suggestion is not None:
            details["suggested_record"] = {"name": record_name, "type": "TXT", "value": suggestion}
        if hint:
            details["hint"] = hint
        return CheckOutcome(check, absent[0], absent[1], details)
    if len(records) > 1:
        return CheckOutcome(
            check,
            CheckStatus.FAIL,
            f"{len(records)} {label} records: they are all ignored.",
            details,
        )
    details["record"] = records[0]
    return PolicyRecord(records[0], parse_tags(records[0], lower_keys=lower_keys), details)
