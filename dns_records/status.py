"""The four statuses of a check result. Pure: the models, verdicts and API all reuse it."""

from __future__ import annotations

from enum import StrEnum


class CheckStatus(StrEnum):
    """`fail`: the record or server is wrong. `error`: mailsec could not tell (never a fail)."""

    OK = "ok"
    WARNING = "warning"
    FAIL = "fail"
    ERROR = "error"

    @property
    def label(self) -> str:
        return self.value.capitalize() if self is not CheckStatus.OK else "OK"


STATUS_CHOICES = [(status.value, status.label) for status in CheckStatus]
