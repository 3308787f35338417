"""Read queries of the core: which organisations a user may see and change, members, tokens."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as UserModel
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from mailsec.models import (
    WRITE_ROLES,
    ApiToken,
    AuditLog,
    Invitation,
    Membership,
    Organisation,
    Role,
    TaskRun,
)
from mailsec.services.members import invitation_code_hash

User = UserModel | AnonymousUser


def organisations_visible(user: User) -> QuerySet[Organisation]:
    if not user.is_authenticated:
        return Organisation.objects.none()
    return Organisation.objects.filter(memberships__user=user)


def organisations_writable(user: User) -> QuerySet[Organisation]:
    if not user.is_authenticated:
        return Organisation.objects.none()
    return Organisation.objects.filter(memberships__user=user, memberships__role__in=WRITE_ROLES)


def organisation_visible(user: User, slug: str) -> Organisation | None:
    """The organisation if the user is a member of it; another organisation's is None."""
    return organisations_visible(user).filter(slug=slug).first()


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


def memberships_with_members(user: User) -> QuerySet[Membership]:
    """The user's own memberships by organisation name, each organisation with its members
    (by username) prefetched as `organisation.memberships.all()`: two queries in all."""
    if not user.is_authenticated:
        return Membership.objects.none()
    members = Membership.objects.select_related("user").order_by("user__username")
    return (
        Membership.objects.filter(user=user)
        .select_related("organisation")
        .prefetch_related(Prefetch("organisation__memberships", queryset=members))
        .order_by("organisation__name")
    )


def membership_visible(user: User, pk: int) -> Membership | None:
    """A membership in one of the user's organisations, with its organisation and user."""
    return (
        Membership.objects.filter(organisation__in=organisations_visible(user), pk=pk)
        .select_related("organisation", "user")
        .first()
    )


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """The user's own API tokens, newest first, revoked and expired ones included."""
    if not user.is_authenticated:
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user)


def api_token_of(user: User, pk: int) -> ApiToken | None:
    """One of the user's own tokens; anyone else's is None."""
    return api_tokens_of(user).filter(pk=pk).first()


def _invitations_pending() -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        accepted_at=None, declined_at=None, expires_at__gt=timezone.now()
    ).select_related("organisation", "invited_by")


def invitations_pending_for(user: User) -> QuerySet[Invitation]:
    """Invitations naming the user's account, not yet answered or expired, newest first."""
    if not user.is_authenticated:
        return Invitation.objects.none()
    return _invitations_pending().filter(user=user)


def invitation_pending_for(user: User, pk: int) -> Invitation | None:
    """One of the user's pending invitations; anyone else's is None."""
    return invitations_pending_for(user).filter(pk=pk).first()


def invitation_by_code(code: str) -> Invitation | None:
    """The pending invitation a link's code opens; a used, expired or unknown code is None."""
    return _invitations_pending().filter(code_hash=invitation_code_hash(code)).first()


def invitations_open_by_organisation(user: User) -> dict[int, list[Invitation]]:
    """Pending invitations of the organisations the user owns, by organisation id, newest
    first: what an owner may withdraw. One query."""
    if not user.is_authenticated:
        return {}
    owned = Membership.objects.filter(user=user, role=Role.OWNER).values("organisation")
    result: dict[int, list[Invitation]] = {}
    for invitation in _invitations_pending().filter(organisation__in=owned):
        result.setdefault(invitation.organisation_id, []).append(invitation)
    return result


def invitation_open_owned(user: User, pk: int) -> Invitation | None:
    """A pending invitation of an organisation the user is a member of (the service decides
    whether they may withdraw it); anyone else's is None."""
    return (
        _invitations_pending().filter(organisation__in=organisations_visible(user), pk=pk).first()
    )
