"""Domains of an organisation and the results of the checks run against their DNS."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

from dns_records import dkim
from dns_records.checks import check_label, check_names
from dns_records.names import display_domain
from dns_records.status import STATUS_CHOICES, CheckStatus
from mailsec.models import Organisation

__all__ = [
    "CheckEvent",
    "CheckResult",
    "CheckState",
    "CheckStatus",
    "DkimKey",
    "DkimKeyState",
    "DkimSelector",
    "DnsUpdateTarget",
    "Domain",
    "TsigAlgorithm",
]


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
    dkim_rotation_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Rotate the active DKIM keys this often; empty: by hand"
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


class DkimKeyState(models.TextChoices):
    """A key's life: nothing becomes active while its record is not published."""

    GENERATING = "generating", "Generating"
    PENDING = "pending", "Pending (waiting for its record)"
    PUBLISHED = "published", "Published"
    ACTIVE = "active", "Active (signing)"
    RETIRING = "retiring", "Retiring (successor active, record kept)"
    RETIRED = "retired", "Retired (record may be removed)"


# Keys whose record must be in DNS (the check fails without it) and which a host may sign with.
LIVE_DKIM_STATES = (DkimKeyState.PUBLISHED, DkimKeyState.ACTIVE, DkimKeyState.RETIRING)


class DkimKey(models.Model):
    """A DKIM signing key of a domain: the private half encrypted at rest, the record, the state."""

    # The identity the private key's ciphertext is bound to (its associated data): a ciphertext
    # copied to another row does not decrypt there.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=10, choices=[("rsa", "RSA"), ("ed25519", "Ed25519")])
    bits = models.PositiveSmallIntegerField(null=True, blank=True, help_text="RSA modulus size")
    public_key = models.TextField(blank=True, help_text="Base64 p= value, empty until generated")
    private_key = models.TextField(blank=True, help_text="Encrypted (mailsec.secrets)")
    state = models.CharField(
        max_length=10, choices=DkimKeyState.choices, default=DkimKeyState.GENERATING
    )
    predecessor = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="successor"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retiring_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    record_removed_at = models.DateTimeField(
        null=True, blank=True, help_text="When mailsec removed the retired record by RFC 2136"
    )
    signing_checked_at = models.DateTimeField(null=True, blank=True)
    signing_verified = models.BooleanField(null=True, blank=True)
    signing_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["domain", "-created_at"]
        constraints = [
            # A selector names one key of a domain; also serves "keys of this domain".
            models.UniqueConstraint(
                fields=["domain", "selector"], name="dkimkey_unique_domain_selector"
            ),
        ]
        indexes = [
            # The state machine's scan: keys in a state, oldest first.
            models.Index(fields=["state", "created_at"], name="dkimkey_state_created"),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.name} ({self.algorithm}, {self.state})"

    @property
    def secret_context(self) -> str:
        return f"dns_records.DkimKey:{self.uid}:private_key"

    @property
    def dns_name(self) -> str:
        return dkim.record_name(self.selector, self.domain.name)

    @property
    def dns_value(self) -> str:
        if not self.public_key:
            return ""
        return dkim.record_value(dkim.DkimAlgorithm(self.algorithm), self.public_key)


class DkimSelector(models.Model):
    """A selector another sender signs the domain's mail with (Google Workspace, an ESP)."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="dkim_selectors")
    selector = models.CharField(max_length=63)
    note = models.CharField(max_length=100, blank=True, help_text="Who signs with it")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain", "selector"]
        constraints = [
            # Watched once per domain; also serves "selectors of this domain".
            models.UniqueConstraint(
                fields=["domain", "selector"], name="dkimselector_unique_domain_selector"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.name} (external)"


class TsigAlgorithm(models.TextChoices):
    HMAC_SHA256 = "hmac-sha256", "HMAC-SHA256"
    HMAC_SHA512 = "hmac-sha512", "HMAC-SHA512"


class DnsUpdateTarget(models.Model):
    """Where mailsec publishes a domain's DKIM records itself: an RFC 2136 server and TSIG key."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    domain = models.OneToOneField(Domain, on_delete=models.CASCADE, related_name="dns_update")
    server = models.CharField(max_length=60, help_text="ip or ip:port of the primary server")
    zone = models.CharField(max_length=253, help_text="The zone to update")
    tsig_name = models.CharField(max_length=253)
    tsig_algorithm = models.CharField(
        max_length=20, choices=TsigAlgorithm.choices, default=TsigAlgorithm.HMAC_SHA256
    )
    tsig_secret = models.TextField(help_text="Encrypted (mailsec.secrets)")
    created_at = models.DateTimeField(auto_now_add=True)
    last_update_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"RFC 2136 updates of {self.zone} at {self.server}"

    @property
    def secret_context(self) -> str:
        return f"dns_records.DnsUpdateTarget:{self.uid}:tsig_secret"
