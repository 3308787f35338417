"""Write use-cases of the core: organisations, memberships, API tokens, audit, task runs.

Every function takes the acting user explicitly and writes the audit log in the same transaction.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.text import slugify

from mailsec.models import (
    ApiToken,
    AuditLog,
    Membership,
    Organisation,
    Role,
    TaskRun,
    TaskState,
    TokenScope,
)

Actor = User | AnonymousUser | None

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "msk_"  # noqa: S105  (a marker, not a secret)


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: Any,
    organisation: Organisation | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    user = actor if isinstance(actor, User) else None
    return AuditLog.objects.create(
        organisation=organisation,
        actor=user,
        actor_name=user.get_username() if user else "system",
        action=action,
        object_type=type(obj).__name__.lower(),
        object_id=str(getattr(obj, "pk", "") or ""),
        object_repr=str(obj)[:255],
        before=before,
        after=after,
    )


@transaction.atomic
def organisation_create(*, name: str, actor: Actor) -> Organisation:
    base = slugify(name)[:50] or "org"
    slug, n = base, 1
    while Organisation.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    organisation = Organisation.objects.create(name=name, slug=slug)
    audit_record(
        actor=actor,
        action="organisation.create",
        obj=organisation,
        organisation=organisation,
        after={"name": name, "slug": slug},
    )
    return organisation


@transaction.atomic
def membership_set(
    *, organisation: Organisation, user: User, role: Role, actor: Actor
) -> Membership:
    membership, created = Membership.objects.get_or_create(
        organisation=organisation, user=user, defaults={"role": role}
    )
    before = None if created else {"role": membership.role}
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="membership.set",
        obj=membership,
        organisation=organisation,
        before=before,
        after={"user": user.get_username(), "role": str(role)},
    )
    return membership


def _require_owner(actor: Actor, organisation: Organisation) -> None:
    if (
        not isinstance(actor, User)
        or not Membership.objects.filter(
            organisation=organisation, user=actor, role=Role.OWNER
        ).exists()
    ):
        raise PermissionDenied("Only an owner of this organisation can manage its members.")


def _lock_organisation(organisation: Organisation) -> None:
    """Serialise membership changes of one organisation, so two owners demoting or removing
    each other at once cannot both pass the last-owner check."""
    Organisation.objects.select_for_update().filter(pk=organisation.pk).first()


def _keeps_an_owner(membership: Membership) -> None:
    others = Membership.objects.filter(organisation=membership.organisation, role=Role.OWNER)
    if membership.role == Role.OWNER and not others.exclude(pk=membership.pk).exists():
        raise ValidationError("An organisation needs at least one owner.")


@transaction.atomic
def member_add(
    *, organisation: Organisation, username: str, role: Role, actor: Actor
) -> tuple[Membership, str | None]:
    """Give a user a role, creating the account if needed; returns its one-time password then."""
    _lock_organisation(organisation)
    _require_owner(actor, organisation)
    username = username.strip()
    if not username or len(username) > 150:
        raise ValidationError("Enter a username of at most 150 characters.")
    User.username_validator(username)
    user = User.objects.filter(username=username).first()
    password = None
    if user is None:
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError(
                f"A user whose name differs from {username!r} only in case exists; use that name."
            )
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(username=username, password=password)
        audit_record(
            actor=actor, action="user.create", obj=user, organisation=organisation,
            after={"username": username},
        )  # fmt: skip
    existing = Membership.objects.filter(organisation=organisation, user=user).first()
    if existing is not None and role != Role.OWNER:
        _keeps_an_owner(existing)  # demoting the last owner would leave nobody in charge
    return membership_set(organisation=organisation, user=user, role=role, actor=actor), password


@transaction.atomic
def member_remove(*, membership: Membership, actor: Actor) -> None:
    _lock_organisation(membership.organisation)
    _require_owner(actor, membership.organisation)
    _keeps_an_owner(membership)
    audit_record(
        actor=actor,
        action="membership.remove",
        obj=membership,
        organisation=membership.organisation,
        before={"user": membership.user.get_username(), "role": membership.role},
    )
    membership.delete()


def api_token_hash(key: str) -> str:
    """Keyed hash of an API key; a database dump without SECRET_KEY reveals nothing usable."""
    return salted_hmac("mailsec.api-token", key, algorithm="sha256").hexdigest()


@transaction.atomic
def api_token_create(
    *,
    user: User,
    scope: TokenScope,
    actor: Actor,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext key, which is never stored."""
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[: len(TOKEN_PREFIX) + 6],
        key_hash=api_token_hash(key),
        scope=scope,
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="api_token.create",
        obj=token,
        organisation=None,
        after={
            "user": user.get_username(),
            "scope": str(scope),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, key


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="api_token.revoke", obj=token, organisation=None)


LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_authenticate(key: str) -> ApiToken | None:
    """The live token for this key, or None for a wrong, unknown, expired or revoked one."""
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=api_token_hash(key), revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        return None
    # Recording every request would turn each API read into a write; a minute is precise enough.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def task_run_create(
    *,
    organisation: Organisation,
    kind: str,
    obj: Any,
    actor: Actor,
) -> TaskRun:
    user = actor if isinstance(actor, User) else None
    return TaskRun.objects.create(
        organisation=organisation,
        kind=kind,
        object_type=type(obj).__name__.lower(),
        object_id=str(obj.pk),
        created_by=user,
    )


def current_claimer() -> str:
    """This process, as it signs the task runs it claims: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claimer_is_dead(claimer: str) -> bool:
    """True only when the claimer was a process on this host that no longer exists."""
    host, _, pid = claimer.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def task_run_claim(*, task_run_id: Any, stale_after: timedelta, claimer: str = "") -> bool:
    """Mark the run as started if nobody else holds it; False means skip this delivery.

    A finished run is never claimed again. A running one is, when its claimer died: Celery
    redelivers the message of a pool process killed mid-task (late acks), and the claimer's
    pid is gone on this host; on another host, once it has run longer than the hard time limit.
    """
    claimer = claimer or current_claimer()
    now = timezone.now()
    claimable = Q(state=TaskState.PENDING) | Q(
        state=TaskState.RUNNING, started_at__lt=now - stale_after
    )
    holder = (
        TaskRun.objects.filter(pk=task_run_id, state=TaskState.RUNNING)
        .values_list("claimed_by", flat=True)
        .first()
    )
    if holder and _claimer_is_dead(holder):
        claimable |= Q(state=TaskState.RUNNING, claimed_by=holder)
    updated = TaskRun.objects.filter(claimable, pk=task_run_id).update(
        state=TaskState.RUNNING, started_at=now, attempts=F("attempts") + 1, claimed_by=claimer
    )
    return updated == 1


def task_run_finish(
    *,
    task_run_id: Any,
    result: dict[str, Any] | None = None,
    error: str = "",
    claimer: str = "",
) -> None:
    """Record the outcome, unless another claimer has taken the run over meanwhile."""
    TaskRun.objects.filter(
        pk=task_run_id, state=TaskState.RUNNING, claimed_by=claimer or current_claimer()
    ).update(
        state=TaskState.FAILED if error else TaskState.SUCCEEDED,
        finished_at=timezone.now(),
        result=result,
        error=error[:2000],
    )


def task_run_execute(
    *, task_run_id: Any, stale_after: timedelta, work: Callable[[], dict[str, Any] | None]
) -> bool:
    """Claim the run, do the work, record the outcome. False when the run was not claimable.

    An exception is recorded on the run and re-raised, so Celery logs it too.
    """
    if not task_run_claim(task_run_id=task_run_id, stale_after=stale_after):
        logger.info("task run %s already claimed or finished; skipping", task_run_id)
        return False
    try:
        result = work()
    except SoftTimeLimitExceeded:
        task_run_finish(task_run_id=task_run_id, error="timed out")
        raise
    except Exception as exc:
        task_run_finish(task_run_id=task_run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    task_run_finish(task_run_id=task_run_id, result=result)
    return True


ABANDONED_RUNNING = timedelta(hours=2)
ABANDONED_PENDING = timedelta(days=1)


def task_runs_reap(*, now: datetime) -> int:
    """Mark runs no worker will ever finish as failed, so nothing polls a 'running' job forever.

    A run still RUNNING two hours after it started outlived every task's hard time limit and
    the broker's redelivery: its worker was killed. One PENDING for a day was never picked up.
    """
    running = TaskRun.objects.filter(
        state=TaskState.RUNNING, started_at__lt=now - ABANDONED_RUNNING
    ).update(
        state=TaskState.FAILED,
        finished_at=now,
        error="abandoned: the worker stopped without finishing (time limit or crash)",
    )
    pending = TaskRun.objects.filter(
        state=TaskState.PENDING, created_at__lt=now - ABANDONED_PENDING
    ).update(state=TaskState.FAILED, finished_at=now, error="never started: no worker took it")
    return running + pending
