"""Core records shared by every app: organisations, roles, API tokens, audit log, task runs."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models


class Organisation(models.Model):
    """A tenant: the domains, hosts and reports of one organisation, seen only by its members."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    VIEWER = "viewer", "Viewer"


WRITE_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class Membership(models.Model):
    """A user's role in one organisation: owners and admins change things, viewers only look."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One role per user and organisation; also serves "organisations of this user".
            models.UniqueConstraint(
                fields=["user", "organisation"], name="membership_unique_user_org"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.organisation}"

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


class Invitation(models.Model):
    """An owner's offer of a role in an organisation: it becomes a membership only when the
    invited person accepts it (on their Organisations page, or through the link's code)."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="invitations"
    )
    username = models.CharField(max_length=150, help_text="The name the owner typed")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="invitations",
        help_text="The account named, if any (it sees the invitation); else whoever accepts",
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    code_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the link's code")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)
    sign_up_refusals = models.PositiveSmallIntegerField(
        default=0, help_text="Taken usernames tried through the link; a few end it"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A user's pending invitations, shown on their Organisations page.
            models.Index(
                fields=["user", "expires_at"],
                condition=models.Q(accepted_at__isnull=True, declined_at__isnull=True),
                name="invitation_pending_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.username} invited as {self.role} of {self.organisation}"


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Read and write"


class ApiToken(models.Model):
    """A REST API credential: only a keyed hash of the key is stored; the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(
        max_length=12, help_text="First characters of the key, to recognise it"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=5, choices=TokenScope.choices, default=TokenScope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user}, {self.scope})"


class AuditLog(models.Model):
    """One change made through a service: who, what, when, and the object before and after."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_log"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="Kept if the user goes")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The organisation's audit page, newest first.
            models.Index(fields=["organisation", "-created_at"], name="audit_org_created"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.object_repr}"
        )


class TaskState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


UNFINISHED_TASK_STATES = (TaskState.PENDING, TaskState.RUNNING)
FINISHED_TASK_STATES = (TaskState.SUCCEEDED, TaskState.FAILED)


class TaskKind(models.TextChoices):
    """What a background job does; each capability app adds its kinds here."""

    DOMAIN_CHECK = "domain.check", "Check a domain's DNS"
    DKIM_GENERATE = "dkim.generate", "Generate a DKIM key"
    REPORT_PARSE = "report.parse", "Parse a received report"
    IMAP_POLL = "report.imap_poll", "Fetch reports from an IMAP mailbox"
    BLOCKLIST_POLL = "blocklist.poll", "Poll the blocklists"
    HOST_DEPLOY = "host.deploy", "Deploy config to a host"
    HOST_PROBE = "host.probe", "Probe a host's services"


class TaskRun(models.Model):
    """A background job answered with 202: its state, owner organisation and outcome.

    The id is the Celery task id. A worker claims the row with a conditional update before it
    works, so a redelivered message never runs a finished job again.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=64, choices=TaskKind.choices)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=10, choices=TaskState.choices, default=TaskState.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=200, blank=True, help_text="host:pid of the claimer")
    result: models.JSONField[Any] = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # "Is a check of this domain still running?" for the pending badge.
            models.Index(
                fields=["object_type", "object_id", "kind", "-created_at"], name="taskrun_object"
            ),
            # The reaper: runs still RUNNING since before a cutoff.
            models.Index(fields=["state", "started_at"], name="taskrun_state_started"),
            # The reaper: runs still PENDING since before a cutoff.
            models.Index(fields=["state", "created_at"], name="taskrun_state_created"),
            # Pruning: finished runs older than a cutoff.
            models.Index(fields=["state", "finished_at"], name="taskrun_state_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state not in UNFINISHED_TASK_STATES
