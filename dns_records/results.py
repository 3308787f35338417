"""The shape of a check result, shared by the API, the UI and `check_domain --json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from dns_records.models import CheckStatus


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
