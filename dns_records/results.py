"""The shape of a check result, shared by the API, the UI and `check_domain --json`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from dns_records.status import CheckStatus


class CheckResultDict(TypedDict):
    name: str
    status: str
    summary: str
    details: dict[str, Any]
    checked_at: str


@dataclass(frozen=True)
class CheckOutcome:
    """A verdict about one aspect of a domain's DNS: `fail` means wrong, `error` means unknown."""

    name: str
    status: CheckStatus
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, checked_at: datetime) -> CheckResultDict:
        return {
            "name": self.name,
            "status": str(self.status),
            "summary": self.summary,
            "details": self.details,
            "checked_at": checked_at.isoformat(),
        }


@dataclass(frozen=True)
class Finding:
    """One thing a check noticed; the worst finding sets the check's status."""

    status: CheckStatus
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"status": str(self.status), "message": self.message}


# fail outranks error: a definite fault is reported even when another lookup failed.
_RANK = {CheckStatus.OK: 0, CheckStatus.WARNING: 1, CheckStatus.ERROR: 2, CheckStatus.FAIL: 3}


def worst(statuses: list[CheckStatus]) -> CheckStatus:
    return max(statuses, key=_RANK.__getitem__, default=CheckStatus.OK)


def outcome_from_findings(
    name: str, findings: list[Finding], ok_summary: str, details: dict[str, Any]
) -> CheckOutcome:
    """The check's verdict: the worst finding's status, its message as the summary."""
    status = worst([f.status for f in findings])
    if status is CheckStatus.OK:
        summary = ok_summary
    else:
        top = [f for f in findings if f.status is status]
        summary = top[0].message
        others = len([f for f in findings if f.status is not CheckStatus.OK]) - 1
        if others > 0:
            summary += f" (and {others} more)"
    details = {
        **details,
        "findings": [f.as_dict() for f in findings if f.status is not CheckStatus.OK],
    }
    return CheckOutcome(name, status, summary, details)


# What a check stores comes from DNS, written by strangers. PostgreSQL's text and jsonb columns
# refuse NUL (and any string that is not valid UTF-8, such as a lone surrogate), so one record
# holding one would make storing the whole run fail; other control characters would reach the
# page invisibly. Tab, newline and carriage return are kept: they lay out text that is meant to
# span lines (an MTA-STS policy) and show as themselves.
_KEPT_CONTROLS = frozenset("\t\n\r")
# Stored details are kept for months: a check's lists (MX hosts, PTR names, SPF terms) and
# strings are cut to what a person reads, so a hostile zone cannot make each run cost megabytes.
MAX_DETAIL_ITEMS = 50
MAX_DETAIL_STRING = 4096
MAX_DETAILS_CHARS = 64 * 1024


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _needs_escape(char: str) -> bool:
    code = ord(char)
    if char in _KEPT_CONTROLS:
        return False
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF


def visible_text(text: str) -> str:
    """`text` with each C0/C1 control character (but tab, newline, CR) and lone surrogate
    written as a visible escape: NUL as the four characters \\x00."""
    if not any(_needs_escape(c) for c in text):
        return text
    return "".join(_escaped(c) if _needs_escape(c) else c for c in text)


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        text = visible_text(value)
        if len(text) > MAX_DETAIL_STRING:
            return (
                text[:MAX_DETAIL_STRING]
                + f"… ({len(text) - MAX_DETAIL_STRING} more characters not kept)"
            )
        return text
    if isinstance(value, dict):
        return {visible_text(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        kept = [_storable(item) for item in items[:MAX_DETAIL_ITEMS]]
        if len(items) > MAX_DETAIL_ITEMS:
            kept.append(f"… {len(items) - MAX_DETAIL_ITEMS} more not kept")
        return kept
    return value


def storable(outcome: CheckOutcome) -> CheckOutcome:
    """The outcome as it may be stored and shown: control characters escaped, details bounded.

    The verdict has already been reached on the real records; only what is kept changes.
    """
    details = _storable(outcome.details)
    if len(json.dumps(details, default=str)) > MAX_DETAILS_CHARS:
        details = {
            "findings": details.get("findings", [])[:MAX_DETAIL_ITEMS],
            "details_not_kept": f"the details were larger than {MAX_DETAILS_CHARS} characters",
        }
    return CheckOutcome(outcome.name, outcome.status, visible_text(outcome.summary), details)
