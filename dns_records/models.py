"""Domains of an organisation and the results of the checks run against their DNS."""

from __future__ import annotations

from typing import Any

from django.db import models

from dns_records.names import display_domain
from mailsec.models import Organisation


class CheckStatus(models.TextChoices):
    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    FAIL = "fail", "Fail"
    ERROR = "error", "Error"


# Worst first: what a domain's overall badge shows.
STATUS_SEVERITY = {
    CheckStatus.FAIL: 3,
    CheckStatus.ERROR: 2,
    CheckStatus.WARNING: 1,
    CheckStatus.OK: 0,
}


class CheckName(models.TextChoices):
    DELEGATION = "delegation", "Delegation (NS and SOA)"


class Domain(models.Model):
    """A mail domain an organisation manages, stored in its ASCII (IDNA) form."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(max_length=253)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # A name once per organisation; also serves lookups by organisation and name.
            models.UniqueConstraint(fields=["organisation", "name"], name="domain_unique_org_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        return display_domain(self.name)


class CheckResult(models.Model):
    """One run of one check against one domain; the newest per name is the current status."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="check_results")
    name = models.CharField(max_length=20, choices=CheckName.choices)
    status = models.CharField(max_length=10, choices=CheckStatus.choices)
    summary = models.CharField(max_length=500)
    details: models.JSONField[Any] = models.JSONField(default=dict)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [
            # Latest result per check of a domain, and its history newest first.
            models.Index(fields=["domain", "name", "-checked_at"], name="checkresult_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.domain} {self.name}: {self.status}"
