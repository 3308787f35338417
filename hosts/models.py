"""Security policies, the managed hosts they apply to, and deployments of rendered config.

A policy's values are `hosts.policy.PolicyValues` stored as JSON (validated by
`hosts.policy.validate` before they are saved); a host pins its SSH host key at registration and
holds mailsec's own SSH client key for it, encrypted at rest. A deployment records who pushed
what (each file's hash, the diff), how it ended and its log; the files last deployed are kept so
drift (a hand edit on the host) can be shown as a diff.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from dns_records.models import Domain
from mailsec.models import Organisation

__all__ = [
    "DeployedFile",
    "Deployment",
    "DeploymentState",
    "Host",
    "HostEvent",
    "Policy",
    "ProbeResult",
    "ProbeStatus",
]


class Policy(models.Model):
    """The values of the thirteen controls' enforce column, assigned to hosts."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="policies"
    )
    name = models.CharField(max_length=100)
    values: models.JSONField[Any] = models.JSONField(
        default=dict, help_text="hosts.policy.PolicyValues as a JSON object"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="policy_unique_org_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Host(models.Model):
    """A mail server mailsec manages over SSH."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="hosts")
    name = models.CharField(max_length=253, help_text="The host's mail name (myhostname)")
    address = models.CharField(max_length=253, help_text="IP address or name SSH connects to")
    ssh_port = models.PositiveIntegerField(default=22)
    ssh_user = models.CharField(max_length=32, default="mailsec")
    postfix_config_dir = models.CharField(max_length=255, default="/etc/postfix")
    dovecot_config_dir = models.CharField(max_length=255, default="/etc/dovecot")
    opendkim_config_dir = models.CharField(max_length=255, default="/etc/opendkim")
    domains = models.ManyToManyField(Domain, blank=True, related_name="hosts")
    policy = models.ForeignKey(
        Policy, on_delete=models.PROTECT, null=True, blank=True, related_name="hosts"
    )
    host_key = models.TextField(
        blank=True, help_text="The SSH host key fetched at registration (OpenSSH public key line)"
    )
    host_key_fingerprint = models.CharField(max_length=100, blank=True, help_text="SHA256:...")
    host_key_confirmed = models.BooleanField(default=False)
    host_key_confirmed_at = models.DateTimeField(null=True, blank=True)
    host_key_confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    ssh_private_key = models.TextField(blank=True, help_text="mailsec's client key; encrypted")
    ssh_public_key = models.TextField(blank=True, help_text="To install in authorized_keys")
    facts: models.JSONField[Any] = models.JSONField(
        default=dict, blank=True, help_text="What the host reported: versions, addresses"
    )
    deploying_until = models.DateTimeField(
        null=True, blank=True, help_text="Deployment lease: another waits until it ends or expires"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="host_unique_org_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def secret_context(self) -> str:
        return f"hosts.Host:{self.uid}:ssh_private_key"


class DeploymentState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    UNCHANGED = "unchanged", "Unchanged"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"


class Deployment(models.Model):
    """One push of rendered config to a host: what, by whom, how it ended, and its log."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="deployments")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(
        max_length=12, choices=DeploymentState.choices, default=DeploymentState.PENDING
    )
    files: models.JSONField[Any] = models.JSONField(
        default=list, blank=True, help_text='[{"path", "sha256", "changed"}]'
    )
    diff = models.TextField(blank=True)
    log = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["host", "-created_at"], name="deployment_host_created")]

    def __str__(self) -> str:
        return f"{self.host} {self.created_at:%Y-%m-%d %H:%M} {self.state}"


class DeployedFile(models.Model):
    """A file as last deployed to a host: its hash always, its text unless it is a secret."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="deployed_files")
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    mode = models.PositiveIntegerField(default=0o644)
    secret = models.BooleanField(default=False)
    content = models.BinaryField(blank=True, help_text="Empty for secrets (keys)")
    deployment = models.ForeignKey(
        Deployment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["host", "path"], name="deployedfile_unique_host_path"),
        ]

    def __str__(self) -> str:
        return f"{self.host}:{self.path}"


class HostEvent(models.Model):
    """Something that happened to a host that alerts may tell about: drift, a failed deploy."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, help_text="drift, deploy_failed, rolled_back, ...")
    summary = models.CharField(max_length=500)
    details: models.JSONField[Any] = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["host", "-created_at"], name="hostevent_host_created")]

    def __str__(self) -> str:
        return f"{self.host} {self.kind}: {self.summary}"


class ProbeStatus(models.TextChoices):
    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    FAIL = "fail", "Fail"
    ERROR = "error", "Error"


class ProbeResult(models.Model):
    """One live probe of a host's service (smtp_starttls on port 25, imap_tls on 993, ...).

    Every run adds rows (the history); the host's current state is the newest row per
    (name, port). A change of status is also recorded as a HostEvent(kind="probe"). A domain's
    MX target that is no managed host is probed on port 25 too: `domain` and `target` instead
    of `host`.
    """

    host = models.ForeignKey(
        Host, on_delete=models.CASCADE, null=True, blank=True, related_name="probe_results"
    )
    domain = models.ForeignKey(
        Domain, on_delete=models.CASCADE, null=True, blank=True, related_name="mx_probe_results",
        help_text="For an MX target of the domain that is not a managed host",
    )  # fmt: skip
    target = models.CharField(max_length=253, blank=True, help_text="The MX name probed")
    name = models.CharField(max_length=40, help_text="smtp_starttls, smtp_relay, imap_tls, ...")
    address = models.CharField(max_length=45, help_text="The address connected to")
    port = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=ProbeStatus.choices)
    summary = models.CharField(max_length=500)
    details: models.JSONField[Any] = models.JSONField(default=dict, blank=True)
    probed_at = models.DateTimeField()

    class Meta:
        ordering = ["-probed_at", "name", "port"]
        indexes = [
            models.Index(fields=["host", "name", "port", "-probed_at"], name="probe_host_name_at"),
            models.Index(
                fields=["domain", "target", "name", "port", "-probed_at"], name="probe_mx_name_at"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(host__isnull=False) | models.Q(domain__isnull=False),
                name="probe_host_or_domain",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host or self.target} {self.name}:{self.port} {self.status}"
