"""Invitations: only an owner invites, only the invited person's acceptance makes a membership,
the last owner stays, and nothing answers differently for a name that has an account."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from mailsec.models import AuditLog, Invitation, Membership, Role
from mailsec.selectors import invitation_by_code, invitations_pending_for
from mailsec.services import members
from mailsec.services.members import (
    invitation_accept,
    invitation_decline,
    invitation_sign_up,
    member_invite,
)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

GOOD = "a much better passphrase 42"


def _erin() -> User:
    return User.objects.create_user(username="erin", password=PASSWORD)


def test_an_invitation_is_not_a_membership(owner, org):
    erin = _erin()
    done = member_invite(organisation=org, username="erin", role=Role.ADMIN, actor=owner)
    assert done.membership is None
    assert done.invitation is not None and done.code
    assert not Membership.objects.filter(user=erin).exists()
    assert AuditLog.objects.filter(action="invitation.create", actor=owner).exists()


def test_the_answer_for_an_existing_and_an_unknown_name_has_the_same_shape(owner, org):
    _erin()
    existing = member_invite(organisation=org, username="erin", role=Role.VIEWER, actor=owner)
    unknown = member_invite(organisation=org, username="nobody", role=Role.VIEWER, actor=owner)
    assert (existing.membership, unknown.membership) == (None, None)
    assert len(existing.code or "") == len(unknown.code or "")


@pytest.mark.parametrize("who", ["viewer", "outsider"])
def test_only_an_owner_invites(org, owner, viewer, outsider, who):
    actor = {"viewer": viewer, "outsider": outsider}[who]
    with pytest.raises(PermissionDenied):
        member_invite(organisation=org, username="erin", role=Role.OWNER, actor=actor)
    assert not Invitation.objects.exists()


def test_a_current_members_role_changes_at_once(owner, viewer, org):
    done = member_invite(organisation=org, username=viewer.username, role=Role.ADMIN, actor=owner)
    assert done.membership is not None and done.invitation is None
    assert Membership.objects.get(user=viewer, organisation=org).role == Role.ADMIN


def test_the_named_account_sees_and_accepts_its_invitation(owner, org):
    erin = _erin()
    member_invite(organisation=org, username="erin", role=Role.ADMIN, actor=owner)
    [invitation] = invitations_pending_for(erin)
    membership = invitation_accept(invitation=invitation, user=erin)
    assert (membership.user, membership.role) == (erin, Role.ADMIN)
    assert not invitations_pending_for(erin).exists()
    with pytest.raises(ValidationError):
        invitation_accept(invitation=invitation, user=erin)


def test_another_account_cannot_accept_or_decline_without_the_link(owner, outsider, org):
    _erin()
    invitation = member_invite(
        organisation=org, username="erin", role=Role.ADMIN, actor=owner
    ).invitation
    assert invitation is not None
    with pytest.raises(PermissionDenied):
        invitation_accept(invitation=invitation, user=outsider)
    with pytest.raises(PermissionDenied):
        invitation_decline(invitation=invitation, user=outsider)
    assert not Membership.objects.filter(user=outsider, organisation=org).exists()


def test_a_declined_invitation_cannot_be_accepted(owner, org):
    erin = _erin()
    done = member_invite(organisation=org, username="erin", role=Role.ADMIN, actor=owner)
    assert done.invitation is not None and done.code
    invitation_decline(invitation=done.invitation, user=erin)
    assert invitation_by_code(done.code) is None
    with pytest.raises(ValidationError):
        invitation_accept(invitation=done.invitation, user=erin)


def test_accepting_a_lesser_role_cannot_demote_the_last_owner(owner, org):
    done = member_invite(organisation=org, username="somebody", role=Role.VIEWER, actor=owner)
    assert done.invitation is not None
    with pytest.raises(ValidationError, match="at least one owner"):
        invitation_accept(invitation=done.invitation, user=owner, by_code=True)
    assert Membership.objects.get(user=owner, organisation=org).role == Role.OWNER


def test_sign_up_through_the_link_creates_the_account_and_the_membership(owner, org):
    done = member_invite(organisation=org, username="nina", role=Role.VIEWER, actor=owner)
    assert done.invitation is not None and done.code
    invitation = invitation_by_code(done.code)
    assert invitation is not None
    nina = invitation_sign_up(invitation=invitation, username="nina", password=GOOD)
    assert nina.check_password(GOOD)
    assert Membership.objects.get(user=nina, organisation=org).role == Role.VIEWER
    assert invitation_by_code(done.code) is None


def test_sign_up_refuses_taken_names_and_ends_the_link_after_a_few(owner, org):
    done = member_invite(organisation=org, username="nina", role=Role.VIEWER, actor=owner)
    assert done.invitation is not None and done.code
    for _ in range(members.SIGN_UP_REFUSALS_LIMIT):
        with pytest.raises(ValidationError, match="taken"):
            invitation_sign_up(invitation=done.invitation, username="OLIVIA", password=GOOD)
    assert invitation_by_code(done.code) is None
    with pytest.raises(ValidationError):
        invitation_sign_up(invitation=done.invitation, username="nina", password=GOOD)
    assert not User.objects.filter(username="nina").exists()


def test_an_organisation_holds_a_bounded_number_of_open_invitations(owner, org, monkeypatch):
    monkeypatch.setattr(members, "PENDING_INVITATIONS_LIMIT", 2)
    member_invite(organisation=org, username="a", role=Role.VIEWER, actor=owner)
    member_invite(organisation=org, username="b", role=Role.VIEWER, actor=owner)
    with pytest.raises(ValidationError, match="open invitations"):
        member_invite(organisation=org, username="c", role=Role.VIEWER, actor=owner)
    Invitation.objects.filter(username="a").update(expires_at=timezone.now() - timedelta(1))
    member_invite(organisation=org, username="c", role=Role.VIEWER, actor=owner)
