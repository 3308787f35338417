"""Read queries of the core: which organisations a user may see and change."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as UserModel
from django.db.models import Q, QuerySet

from mailsec.models import WRITE_ROLES, AuditLog, Membership, Organisation, TaskRun

User = UserModel | AnonymousUser


def organisations_visible(user: User) -> QuerySet[Organisation]:
    if not user.is_authenticated:
        return Organisation.objects.none()
    return Organisation.objects.filter(memberships__user=user)


def organisations_writable(user: User) -> QuerySet[Organisation]:
    if not user.is_authenticated:
        return Organisation.objects.none()
    return Organisation.objects.filter(memberships__user=user, memberships__role__in=WRITE_ROLES)


def membership_get(user: User, organisation: Organisation) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, organisation=organisation).first()


def can_write(user: User, organisation: Organisation) -> bool:
    membership = membership_get(user, organisation)
    return membership is not None and membership.can_write


def task_runs_visible(user: User) -> QuerySet[TaskRun]:
    return TaskRun.objects.filter(organisation__in=organisations_visible(user))


def audit_log_visible(user: User) -> QuerySet[AuditLog]:
    """Changes in the user's organisations, and the user's own changes that belong to none."""
    if not user.is_authenticated:
        return AuditLog.objects.none()
    own = Q(organisation__isnull=True, actor=user)
    return AuditLog.objects.filter(
        Q(organisation__in=organisations_visible(user)) | own
    ).select_related("organisation")
