"""Domains of an organisation and the results of the checks run against their DNS."""

from __future__ import annotations

from typing import Any

from django.db import models

from dns_records.checks import check_label, check_names
from dns_records.names import display_domain
from dns_records.status import STATUS_CHOICES, CheckStatus
from mailsec.models import Organisation

__all__ = ["CheckEvent", "CheckResult", "CheckState", "CheckStatus", "Domain"]


class Domain(models.Model):
    """A mail domain an organisation manages, stored in its ASCII (IDNA) form."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(max_length=253)
    created_at = models.DateTimeField(auto_now_add=True)
    next_check_at = models.DateTimeField(
        null=True, blank=True, help_text="When the scheduler next queues this domain's checks"
    )
    worst_status = models.CharField(
        max_length=10, choices=STATUS_CHOICES, blank=True, help_text="Worst current check"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            # A name once per organisation; also serves lookups by organisation and name.
            models.UniqueConstraint(fields=["organisation", "name"], name="domain_unique_org_name"),
        ]
        indexes = [
            # The scheduler's "which domains are due?" scan.
            models.Index(fields=["next_check_at"], name="domain_next_check"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        return display_domain(self.name)


class CheckResult(models.Model):
    """One run of one check against one domain; the newest per name is the current status."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="check_results")
    name = models.CharField(max_length=20, help_text="The check (see dns_records.checks)")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES)
    summary = models.CharField(max_length=500)
    details: models.JSONField[Any] = models.JSONField(default=dict)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [
            # Latest result per check of a domain, and its history newest first.
            models.Index(fields=["domain", "name", "-checked_at"], name="checkresult_latest"),
            # Pruning: every run older than the history cutoff.
            models.Index(fields=["checked_at"], name="checkresult_checked_at"),
        ]

    def __str__(self) -> str:
        return f"{self.domain} {self.name}: {self.status}"

    @property
    def label(self) -> str:
        return check_label(self.name)

    @property
    def registered(self) -> bool:
        """False for a check that has been retired since this row was stored."""
        return self.name in check_names()


class CheckState(models.Model):
    """The current result of one check of one domain: what pages and the API read."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="check_states")
    name = models.CharField(max_length=20, help_text="The check (see dns_records.checks)")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES)
    summary = models.CharField(max_length=500)
    details: models.JSONField[Any] = models.JSONField(default=dict)
    checked_at = models.DateTimeField()
    changed_at = models.DateTimeField(help_text="When the status last changed")

    class Meta:
        ordering = ["domain", "name"]
        constraints = [
            # One current row per check; also serves "all checks of this domain".
            models.UniqueConstraint(
                fields=["domain", "name"], name="checkstate_unique_domain_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.domain} {self.name}: {self.status}"

    @property
    def label(self) -> str:
        return check_label(self.name)

    @property
    def registered(self) -> bool:
        """False for a check that has been retired since this row was stored."""
        return self.name in check_names()


class CheckEvent(models.Model):
    """A check's status changed: the history admins read, and what alerts will notify on."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="check_events")
    name = models.CharField(max_length=20, help_text="The check (see dns_records.checks)")
    previous_status = models.CharField(max_length=10, choices=STATUS_CHOICES, blank=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES)
    summary = models.CharField(max_length=500)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A domain's change history, newest first.
            models.Index(fields=["domain", "-created_at"], name="checkevent_domain_created"),
        ]

    def __str__(self) -> str:
        return f"{self.domain} {self.name}: {self.previous_status or 'new'} -> {self.status}"

    @property
    def label(self) -> str:
        return check_label(self.name)

    @property
    def registered(self) -> bool:
        """False for a check that has been retired since this row was stored."""
        return self.name in check_names()
