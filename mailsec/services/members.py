"""Organisations and who may act in them: creating one, inviting, changing and removing members.

Member changes are an owner's; the last owner of an organisation always stays. An owner never
adds someone outside the organisation: they invite a username, and a membership exists only once
the invited person accepts. The owner's answer is the same whether the name has an account:
an invitation and a one-time link to pass on. Someone with the account named sees the invitation
on their Organisations page; whoever holds the link accepts with the account they are logged in
with, or creates a new account with it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django.utils.text import slugify

from mailsec.models import Invitation, Membership, Organisation, Role
from mailsec.services.audit import Actor, audit_record


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
    """Owners manage members; `None` is the operator at the server's command line (add_member)."""
    if actor is None:
        return
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
    """Give a user a role at once, creating the account if needed; returns its one-time password
    then. For the operator at the server only (manage.py add_member): owners invite instead."""
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


INVITATION_DAYS = 7
# Pending invitations an organisation may hold at once: each is a sign-up link.
PENDING_INVITATIONS_LIMIT = 50


def invitation_code_hash(code: str) -> str:
    """The stored form of a link's code: 256 random bits need no key or salt."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MemberInvite:
    """What an owner's "add or change a member" did: changed a current member's role
    (`membership`), or invited the name (`invitation`, with the link's `code`, shown once)."""

    membership: Membership | None = None
    invitation: Invitation | None = None
    code: str | None = None


def _clean_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 150:
        raise ValidationError("Enter a username of at most 150 characters.")
    User.username_validator(username)
    return username


@transaction.atomic
def member_invite(
    *, organisation: Organisation, username: str, role: Role, actor: Actor
) -> MemberInvite:
    """Change a current member's role, or invite anyone else by name.

    Only members (whom the owner sees listed) are looked up as such; for every other name the
    answer is an invitation, whether or not an account has that name, so it reveals nothing.
    """
    _lock_organisation(organisation)
    _require_owner(actor, organisation)
    username = _clean_username(username)
    existing = (
        Membership.objects.filter(organisation=organisation, user__username=username)
        .select_related("user")
        .first()
    )
    if existing is not None:
        if role != Role.OWNER:
            _keeps_an_owner(existing)  # demoting the last owner would leave nobody in charge
        membership = membership_set(
            organisation=organisation, user=existing.user, role=role, actor=actor
        )
        return MemberInvite(membership=membership)
    now = timezone.now()
    pending = Invitation.objects.filter(
        organisation=organisation, accepted_at=None, declined_at=None, expires_at__gt=now
    )
    if pending.count() >= PENDING_INVITATIONS_LIMIT:
        raise ValidationError(
            f"{organisation.name} has {PENDING_INVITATIONS_LIMIT} open invitations: wait until "
            "some are accepted, declined or expired."
        )
    code = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organisation=organisation,
        username=username,
        user=User.objects.filter(username=username).first(),
        role=role,
        invited_by=actor if isinstance(actor, User) else None,
        code_hash=invitation_code_hash(code),
        expires_at=now + timedelta(days=INVITATION_DAYS),
    )
    audit_record(
        actor=actor,
        action="invitation.create",
        obj=invitation,
        organisation=organisation,
        after={"username": username, "role": str(role)},
    )
    return MemberInvite(invitation=invitation, code=code)


def _pending(invitation: Invitation) -> Invitation:
    """The invitation locked for the change, if it can still be answered."""
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if (
        locked.accepted_at is not None
        or locked.declined_at is not None
        or locked.expires_at <= timezone.now()
    ):
        raise ValidationError("This invitation has been answered or has expired.")
    return locked


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User, by_code: bool = False) -> Membership:
    """The invited person joins with the role: the account named (from its Organisations page),
    or, `by_code`, whoever holds the link, with the account they are logged in with.

    A current member's role changes to the invited one, except that the last owner stays one.
    """
    _lock_organisation(invitation.organisation)
    invitation = _pending(invitation)
    if not by_code and invitation.user_id != user.pk:
        raise PermissionDenied("This invitation is for another account.")
    existing = Membership.objects.filter(organisation=invitation.organisation, user=user).first()
    role = Role(invitation.role)
    if existing is not None and role != Role.OWNER:
        _keeps_an_owner(existing)
    invitation.user = user
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["user", "accepted_at"])
    audit_record(
        actor=user,
        action="invitation.accept",
        obj=invitation,
        organisation=invitation.organisation,
        after={"user": user.get_username(), "role": str(role)},
    )
    return membership_set(organisation=invitation.organisation, user=user, role=role, actor=user)


@transaction.atomic
def invitation_decline(*, invitation: Invitation, user: User) -> None:
    invitation = _pending(invitation)
    if invitation.user_id != user.pk:
        raise PermissionDenied("This invitation is for another account.")
    invitation.declined_at = timezone.now()
    invitation.save(update_fields=["declined_at"])
    audit_record(
        actor=user,
        action="invitation.decline",
        obj=invitation,
        organisation=invitation.organisation,
        after={"user": user.get_username()},
    )


@transaction.atomic
def invitation_withdraw(*, invitation: Invitation, actor: Actor) -> None:
    """An owner takes back an invitation not yet answered: its link stops working."""
    _require_owner(actor, invitation.organisation)
    invitation = _pending(invitation)
    invitation.expires_at = timezone.now()
    invitation.save(update_fields=["expires_at"])
    audit_record(
        actor=actor,
        action="invitation.withdraw",
        obj=invitation,
        organisation=invitation.organisation,
        before={"username": invitation.username, "role": invitation.role},
    )


# Taken usernames a link may try before it stops working: a sign-up form must say a name is
# taken, so each link answers that for a few names only (each link is an audited invitation).
SIGN_UP_REFUSALS_LIMIT = 3


def invitation_sign_up(*, invitation: Invitation, username: str, password: str) -> User:
    """Create a new account through an invitation's link and accept the invitation with it.

    The link works the same whether or not the owner named an existing account, so it reveals
    nothing either; only the choice of a taken name is refused, and after
    SIGN_UP_REFUSALS_LIMIT refusals the invitation ends.
    """
    username = _clean_username(username)
    with transaction.atomic():
        _pending(invitation)
        if not User.objects.filter(username__iexact=username).exists():
            user = User.objects.create_user(username=username, password=password)
            audit_record(
                actor=user,
                action="user.create",
                obj=user,
                organisation=invitation.organisation,
                after={"username": username, "invitation": invitation.pk},
            )
            invitation_accept(invitation=invitation, user=user, by_code=True)
            return user
    # Counted outside the refused transaction, so the count stays.
    now = timezone.now()
    Invitation.objects.filter(pk=invitation.pk).update(
        sign_up_refusals=F("sign_up_refusals") + 1,
        expires_at=Case(
            When(sign_up_refusals__gte=SIGN_UP_REFUSALS_LIMIT - 1, then=Value(now)),
            default=F("expires_at"),
        ),
    )
    raise ValidationError("That username is taken: choose another.")
