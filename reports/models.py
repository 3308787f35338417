"""Received messages, the DMARC aggregate and TLS reports parsed out of them, and their rollups.

Every way in (SMTP listener, pipe, IMAP, upload) first stores the raw message (`RawMessage`);
a worker task parses it and writes the report and all its records in one transaction. The raw
message stays, so a crashed parse is simply parsed again, and a quarantined one can be
re-processed after a parser fix. Dashboards read the daily rollups, never the raw records.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

from dns_records.models import Domain
from mailsec.models import Organisation

__all__ = [
    "DailyRollup",
    "DailySelector",
    "ImapMailbox",
    "IngestSource",
    "RawMessage",
    "RawMessageState",
    "Record",
    "Report",
    "SourceInfo",
    "TlsFailure",
    "TlsPolicy",
    "TlsReport",
]


class IngestSource(models.TextChoices):
    SMTP = "smtp", "SMTP listener"
    PIPE = "pipe", "Postfix pipe"
    IMAP = "imap", "IMAP mailbox"
    UPLOAD = "upload", "Upload (API or dashboard)"
    COMMAND = "command", "ingest_report command"


class RawMessageState(models.TextChoices):
    PENDING = "pending", "Waiting to be parsed"
    STORED = "stored", "Stored as a report"
    DUPLICATE = "duplicate", "A report already stored"
    QUARANTINED = "quarantined", "Quarantined"


class RawMessage(models.Model):
    """A message or file exactly as received, kept until retention removes it."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="raw_messages",
        help_text="Set when the way in knows it (upload, an organisation's IMAP mailbox)",
    )
    source = models.CharField(max_length=10, choices=IngestSource.choices)
    received_at = models.DateTimeField(auto_now_add=True)
    content = models.BinaryField()
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    filename = models.CharField(max_length=255, blank=True)
    envelope_from = models.CharField(max_length=320, blank=True)
    envelope_to = models.CharField(max_length=1000, blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    state = models.CharField(
        max_length=12, choices=RawMessageState.choices, default=RawMessageState.PENDING
    )
    kind = models.CharField(max_length=10, blank=True, help_text="dmarc or tlsrpt once parsed")
    reason = models.CharField(max_length=40, blank=True, help_text="Quarantine reason code")
    detail = models.TextField(blank=True, help_text="What the parser saw, for admins")
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(
        max_length=255, blank=True, help_text="host:pid of the process parsing it"
    )
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The sweeper: pending messages whose parse never finished.
            models.Index(fields=["state", "received_at"], name="rawmessage_state_received"),
            models.Index(fields=["sha256"], name="rawmessage_sha256"),
        ]

    def __str__(self) -> str:
        return f"{self.source} message {self.uid} ({self.state})"


class Report(models.Model):
    """One DMARC aggregate report: who sent it, for which domain and day, and its totals."""

    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="dmarc_reports",
        help_text="Empty: the policy domain is in no organisation (kept and flagged)",
    )
    domain = models.ForeignKey(
        Domain, on_delete=models.SET_NULL, null=True, blank=True, related_name="dmarc_reports"
    )
    raw_message = models.ForeignKey(
        RawMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="reports"
    )
    org_name = models.CharField(max_length=255)
    email = models.CharField(max_length=320, blank=True)
    extra_contact_info = models.CharField(max_length=500, blank=True)
    report_id = models.CharField(max_length=255)
    policy_domain = models.CharField(max_length=253)
    date_begin = models.DateTimeField()
    date_end = models.DateTimeField()
    schema = models.CharField(max_length=10, default="rfc7489")
    generator = models.CharField(max_length=255, blank=True)
    errors: models.JSONField[Any] = models.JSONField(default=list, blank=True)
    policy_p = models.CharField(max_length=12, blank=True)
    policy_sp = models.CharField(max_length=12, blank=True)
    policy_np = models.CharField(max_length=12, blank=True)
    policy_pct = models.PositiveSmallIntegerField(null=True, blank=True)
    policy_adkim = models.CharField(max_length=2, blank=True)
    policy_aspf = models.CharField(max_length=2, blank=True)
    policy_fo = models.CharField(max_length=20, blank=True)
    policy_testing = models.CharField(max_length=2, blank=True)
    policy_discovery_method = models.CharField(max_length=12, blank=True)
    record_count = models.PositiveIntegerField(default=0)
    message_count = models.PositiveBigIntegerField(default=0)
    dmarc_pass_count = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date_begin", "-id"]
        constraints = [
            # The same report delivered twice, or parsed by two workers at once, is stored once:
            # per organisation, and once among the reports for no organisation (two partial
            # indexes, since SQLite cannot make NULLs equal in one).
            models.UniqueConstraint(
                fields=[
                    "organisation",
                    "org_name",
                    "report_id",
                    "policy_domain",
                    "date_begin",
                    "date_end",
                ],
                condition=models.Q(organisation__isnull=False),
                name="report_unique_delivery",
            ),
            models.UniqueConstraint(
                fields=["org_name", "report_id", "policy_domain", "date_begin", "date_end"],
                condition=models.Q(organisation__isnull=True),
                name="report_unique_unmatched",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organisation", "policy_domain", "-date_begin"], name="report_org_domain"
            ),
            models.Index(fields=["created_at"], name="report_created"),
        ]

    def __str__(self) -> str:
        return f"{self.org_name} {self.report_id} for {self.policy_domain}"


class Record(models.Model):
    """One row of a report: a source address, how many messages, and how they were judged."""

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="records")
    day = models.DateField(help_text="The report's first day, for range scans")
    source_ip = models.GenericIPAddressField()
    count = models.PositiveBigIntegerField()
    disposition = models.CharField(max_length=12)
    dkim_aligned = models.CharField(max_length=10)
    spf_aligned = models.CharField(max_length=10)
    header_from = models.CharField(max_length=253, blank=True)
    envelope_from = models.CharField(max_length=253, blank=True)
    envelope_to = models.CharField(max_length=253, blank=True)
    reasons: models.JSONField[Any] = models.JSONField(default=list, blank=True)
    dkim_results: models.JSONField[Any] = models.JSONField(
        default=list, blank=True, help_text='[{"domain", "selector", "result", "human_result"}]'
    )
    spf_results: models.JSONField[Any] = models.JSONField(
        default=list, blank=True, help_text='[{"domain", "scope", "result"}]'
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            # Records arrive roughly in date order: on PostgreSQL a BRIN index on `day`
            # ("record_day_brin", created by migration 0002 there only) serves range scans.
            models.Index(fields=["source_ip"], name="record_source_ip"),
        ]

    def __str__(self) -> str:
        return f"{self.source_ip} x{self.count}"


class DailyRollup(models.Model):
    """Messages per organisation, policy domain, day, source and result: what dashboards read.

    Maintained by the storage service as each report is stored (an upsert that adds counts).
    Reports for no organisation have no rollups: no dashboard shows them.
    """

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    policy_domain = models.CharField(max_length=253)
    day = models.DateField()
    source_ip = models.GenericIPAddressField()
    header_from = models.CharField(max_length=253, blank=True)
    disposition = models.CharField(max_length=12)
    dkim_aligned = models.CharField(max_length=10)
    spf_aligned = models.CharField(max_length=10)
    dkim_pass = models.BooleanField(help_text="Any DKIM signature passed, aligned or not")
    spf_pass = models.BooleanField(help_text="SPF passed, aligned or not")
    messages = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "organisation",
                    "policy_domain",
                    "day",
                    "source_ip",
                    "header_from",
                    "disposition",
                    "dkim_aligned",
                    "spf_aligned",
                    "dkim_pass",
                    "spf_pass",
                ],
                name="dailyrollup_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["organisation", "policy_domain", "day"], name="rollup_domain_day"),
            # Top sources: per source of a domain, its days.
            models.Index(
                fields=["organisation", "policy_domain", "source_ip", "day"],
                name="rollup_domain_source",
            ),
            # The retention prune: rows of days before the window, in batches.
            models.Index(fields=["day"], name="rollup_day"),
        ]

    def __str__(self) -> str:
        return f"{self.policy_domain} {self.day} {self.source_ip}: {self.messages}"


class DailySelector(models.Model):
    """Messages per policy domain, day, DKIM signing domain, selector and result."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    policy_domain = models.CharField(max_length=253)
    day = models.DateField()
    dkim_domain = models.CharField(max_length=253)
    selector = models.CharField(max_length=253, blank=True)
    result = models.CharField(max_length=12)
    messages = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "organisation",
                    "policy_domain",
                    "day",
                    "dkim_domain",
                    "selector",
                    "result",
                ],
                name="dailyselector_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organisation", "policy_domain", "day"], name="selector_domain_day"
            ),
            # The retention prune: rows of days before the window, in batches.
            models.Index(fields=["day"], name="selector_day"),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.dkim_domain} {self.result}: {self.messages}"


class SourceInfo(models.Model):
    """What is known about a sending address: its reverse DNS name, AS and country."""

    ip = models.GenericIPAddressField(unique=True)
    ptr = models.CharField(max_length=253, blank=True)
    ptr_status = models.CharField(
        max_length=10,
        blank=True,
        help_text="ok (forward-confirmed), unverified (does not point back), none, or error",
    )
    asn = models.PositiveIntegerField(null=True, blank=True)
    as_org = models.CharField(max_length=255, blank=True)
    country = models.CharField(max_length=2, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.ip} {self.ptr}".strip()


class TlsReport(models.Model):
    """One SMTP TLS report (RFC 8460) about mail sent to one of the organisation's domains."""

    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tls_reports",
    )
    domain = models.ForeignKey(
        Domain, on_delete=models.SET_NULL, null=True, blank=True, related_name="tls_reports"
    )
    raw_message = models.ForeignKey(
        RawMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="tls_reports"
    )
    org_name = models.CharField(max_length=255)
    report_id = models.CharField(max_length=255)
    contact_info = models.CharField(max_length=500, blank=True)
    policy_domain = models.CharField(max_length=253)
    date_begin = models.DateTimeField()
    date_end = models.DateTimeField()
    successful_sessions = models.PositiveBigIntegerField(default=0)
    failed_sessions = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date_begin", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "org_name", "report_id", "policy_domain"],
                condition=models.Q(organisation__isnull=False),
                name="tlsreport_unique_delivery",
            ),
            models.UniqueConstraint(
                fields=["org_name", "report_id", "policy_domain"],
                condition=models.Q(organisation__isnull=True),
                name="tlsreport_unique_unmatched",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organisation", "policy_domain", "-date_begin"], name="tlsreport_domain"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.org_name} {self.report_id} for {self.policy_domain}"


class TlsPolicy(models.Model):
    report = models.ForeignKey(TlsReport, on_delete=models.CASCADE, related_name="policies")
    policy_type = models.CharField(max_length=20)
    policy_domain = models.CharField(max_length=253)
    policy_strings: models.JSONField[Any] = models.JSONField(default=list, blank=True)
    mx_hosts: models.JSONField[Any] = models.JSONField(default=list, blank=True)
    successful_sessions = models.PositiveBigIntegerField(default=0)
    failed_sessions = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.policy_type} {self.policy_domain}"


class TlsFailure(models.Model):
    policy = models.ForeignKey(TlsPolicy, on_delete=models.CASCADE, related_name="failures")
    result_type = models.CharField(max_length=64)
    failed_session_count = models.PositiveBigIntegerField(default=0)
    sending_mta_ip = models.CharField(max_length=64, blank=True)
    receiving_mx_hostname = models.CharField(max_length=253, blank=True)
    receiving_mx_helo = models.CharField(max_length=253, blank=True)
    receiving_ip = models.CharField(max_length=64, blank=True)
    additional_information = models.CharField(max_length=1000, blank=True)
    failure_reason_code = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.result_type} x{self.failed_session_count}"


class ImapMailbox(models.Model):
    """An organisation's mailbox that receivers send reports to, polled on a schedule."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="imap_mailboxes"
    )
    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField(default=993)
    security = models.CharField(
        max_length=10,
        default="tls",
        choices=[("tls", "TLS (port 993)"), ("starttls", "STARTTLS (port 143)")],
    )
    username = models.CharField(max_length=320)
    password = models.TextField(help_text="Encrypted at rest")
    folder = models.CharField(max_length=200, default="INBOX")
    processed_folder = models.CharField(max_length=200, default="mailsec-processed")
    enabled = models.BooleanField(default=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host", "username"]

    def __str__(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"

    @property
    def secret_context(self) -> str:
        return f"reports.ImapMailbox:{self.uid}:password"
