"""Alerts: where notifications go (channels), what is notified (rules), what was sent
(notifications), and each subject's state between runs (the no-fatigue memory)."""

from __future__ import annotations

import uuid

from django.db import models

from mailsec.models import Organisation


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Signed webhook"
    SLACK = "slack", "Slack"
    TEAMS = "teams", "Microsoft Teams workflow"
    NTFY = "ntfy", "ntfy"


class MinStatus(models.TextChoices):
    WARNING = "warning", "Warning and worse"
    FAIL = "fail", "Fail only"


class Channel(models.Model):
    """A destination: an email address, or an https:// URL with a per-kind payload."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="channels"
    )
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    name = models.CharField(max_length=100)
    target = models.CharField(max_length=500, help_text="Email address or https:// URL")
    secret = models.TextField(blank=True, help_text="Encrypted (mailsec.secrets): webhook HMAC key")
    created_at = models.DateTimeField(auto_now_add=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["organisation_id", "name", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}"

    @property
    def secret_context(self) -> str:
        return f"alerts.Channel:{self.uid}:secret"

    @property
    def target_display(self) -> str:
        """The target as pages and the API show it: a URL's path and query often are the
        credential itself (Slack and Teams webhook URLs, ntfy topics), so only its scheme and
        host are shown after creation."""
        if self.kind == ChannelKind.EMAIL:
            return self.target
        scheme, _, rest = self.target.partition("://")
        host = rest.split("/", 1)[0].split("?", 1)[0]
        return f"{scheme}://{host}/…"

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


class AlertRule(models.Model):
    """Which changes go to which channels: empty `events`/`domains`/`hosts` mean all."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="alert_rules"
    )
    channels = models.ManyToManyField(Channel, related_name="rules")
    min_status = models.CharField(max_length=10, choices=MinStatus.choices, default=MinStatus.FAIL)
    events = models.JSONField(default=list, blank=True)
    domains = models.JSONField(default=list, blank=True)
    hosts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation_id", "id"]

    def __str__(self) -> str:
        return f"rule {self.pk}: {self.min_status} of {', '.join(self.events) or 'all events'}"


class AlertState(models.Model):
    """One subject's memory between runs (see alerts.policy.SubjectState)."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="alert_states"
    )
    key = models.CharField(max_length=400, help_text='e.g. "check:example.com:spf"')
    event = models.CharField(
        max_length=20, help_text="check, blocklist, dkim, drift, deploy, probe"
    )
    domain = models.CharField(max_length=253, blank=True)
    host = models.CharField(max_length=253, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10)
    candidate = models.CharField(max_length=10, blank=True)
    runs_seen = models.PositiveIntegerField(default=0)
    candidate_since = models.DateTimeField(null=True, blank=True)
    since = models.DateTimeField()
    notified_status = models.CharField(max_length=10, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    changes = models.JSONField(default=list, blank=True, help_text="Recent change instants")
    flapping_notified = models.BooleanField(default=False)
    last_run_at = models.DateTimeField(null=True, blank=True, help_text="The run last observed")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organisation_id", "key"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "key"], name="alertstate_org_key")
        ]

    def __str__(self) -> str:
        return f"{self.key}: {self.status}"


class NotificationState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    rule = models.ForeignKey(
        AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="notifications"
    )
    subject = models.CharField(max_length=300)
    body = models.TextField()
    payload = models.JSONField(default=dict, blank=True, help_text="The grouped changes")
    state = models.CharField(
        max_length=10, choices=NotificationState.choices, default=NotificationState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="A delivery attempt is under way (a lease)"
    )
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.channel}: {self.subject}"


class AlertCursor(models.Model):
    """How far the engine has read each source (the newest run or event instant seen)."""

    source = models.CharField(max_length=30, unique=True)
    last_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.source} at {self.last_at}"


class DigestSettings(models.Model):
    organisation = models.OneToOneField(
        Organisation, on_delete=models.CASCADE, related_name="alert_digest"
    )
    frequency = models.CharField(
        max_length=10, choices=[("off", "Off"), ("daily", "Daily"), ("weekly", "Weekly")],
        default="daily",
    )  # fmt: skip
    last_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"digest of {self.organisation}: {self.frequency}"
