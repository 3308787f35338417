"""Organisations and who may act in them: creating one, adding, changing and removing members.

Member changes are an owner's; the last owner of an organisation always stays.
"""

from __future__ import annotations

import secrets

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.text import slugify

from mailsec.models import Membership, Organisation, Role
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
