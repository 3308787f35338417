"""The shape of a check result, shared by the API, the UI and `check_domain --json`."""

from __future__ import annotations

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
